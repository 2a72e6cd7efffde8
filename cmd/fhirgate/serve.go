package main

import (
	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
)

func newServeCmd(e *env, g *globalFlags) *cobra.Command {
	var addr, issuer, fhirBase, upstreamURL, upstreamAuth string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the authorization server (and the FHIR gateway with --upstream)",
		Long: `Run the authorization server, and with --upstream (or gateway.upstream,
upstreams in the configuration) the FHIR gateway at the FHIR base path. It prints one line,
"fhirgate: serving on URL (issuer ISSUER)", when it accepts connections,
and stops gracefully on SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ov := map[string]string{}
			if cmd.Flags().Changed("addr") {
				ov["addr"] = addr
			}
			if cmd.Flags().Changed("issuer") {
				ov["issuer"] = issuer
			}
			if cmd.Flags().Changed("fhir-base") {
				ov["fhir_base"] = fhirBase
			}
			if cmd.Flags().Changed("upstream") {
				ov["gateway.upstream"] = upstreamURL
			}
			if cmd.Flags().Changed("upstream-auth") {
				ov["gateway.upstream_auth"] = upstreamAuth
			}
			cfg, err := loadConfig(e, g, ov)
			if err != nil {
				return err
			}
			log := newLogger(e.stderr, cfg.Log.Level)
			a, err := app.New(cmd.Context(), cfg, app.Options{Logger: log, Ready: e.stdout, Now: e.now})
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "listen address host:port (default 127.0.0.1:8080)")
	cmd.Flags().StringVar(&issuer, "issuer", "", "issuer URL (default http://{addr})")
	cmd.Flags().StringVar(&fhirBase, "fhir-base", "", "FHIR base URL apps send as aud (default {issuer}/fhir)")
	cmd.Flags().StringVar(&upstreamURL, "upstream", "", "FHIR server the gateway serves behind --fhir-base")
	cmd.Flags().StringVar(&upstreamAuth, "upstream-auth", "", "credentials for --upstream: basic:USER:PASS or header:NAME:VALUE")
	return cmd
}
