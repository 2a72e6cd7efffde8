package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/password"
)

// version is set at link time with -ldflags "-X main.version=v1.2.3".
var version = ""

// env is the process environment a command runs in; tests substitute it.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	now            func() time.Time
	passwordParams password.Params
}

// errSilent marks an error already reported.
var errSilent = errors.New("")

// run executes the command line args and returns the exit code: 0 on
// success, 1 on any error (printed to stderr).
func run(ctx context.Context, args []string, e *env) int {
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(e.stderr, "fhirgate: error:", err)
		}
		return 1
	}
	return 0
}

// globalFlags are accepted by every command.
type globalFlags struct {
	config  string
	dataDir string
}

func newRoot(e *env) *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "fhirgate",
		Short:         "SMART on FHIR authorization server",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.config, "config", "", "YAML configuration file")
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", "", "data directory (overrides data_dir)")
	root.AddCommand(
		newServeCmd(e, g),
		newDemoCmd(e, g),
		newUsersCmd(e, g),
		newClientsCmd(e, g),
		newLaunchCmd(e, g),
		newKeysCmd(e, g),
		newAuditCmd(e, g),
		newPatientsCmd(e, g),
		newConsentsCmd(e, g),
		newCertsCmd(e),
		newAdminCmd(e, g),
		newAnomaliesCmd(e, g),
		newVersionCmd(e),
	)
	return root
}

// loadConfig loads the configuration with the global flags and any extra
// overrides (keyed by config path) applied last.
func loadConfig(e *env, g *globalFlags, extra map[string]string) (*config.Config, error) {
	ov := map[string]string{}
	if g.dataDir != "" {
		ov["data_dir"] = g.dataDir
	}
	for k, v := range extra {
		ov[k] = v
	}
	return config.Load(config.LoadOptions{File: g.config, LookupEnv: e.lookupEnv, Overrides: ov})
}

// newLogger logs text to stderr at the configured level.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// printJSON writes v as indented JSON with a trailing newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newVersionCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return printJSON(e.stdout, map[string]string{"version": versionString()})
			}
			_, err := fmt.Fprintln(e.stdout, "fhirgate", versionString())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// splitScopes normalises a scope flag's whitespace.
func splitScopes(s string) string { return strings.Join(strings.Fields(s), " ") }
