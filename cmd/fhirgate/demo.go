package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/demoapp"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Demo fixtures.
const (
	demoClientName  = "fhirgate demo app"
	demoRedirectURI = "http://127.0.0.1:4000/callback"
	demoClientScope = "openid fhirUser profile launch launch/patient offline_access patient/*.rs"
	demoEHRUser     = "fhirgate-gateway"
	demoAppName     = "fhirgate demo app (backend-for-frontend)"
)

// demoUser is a seeded account, printed with its password.
type demoUser struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
	FHIRUser string `json:"fhir_user"`
}

// demoInfo is what `fhirgate demo` prints (one JSON line with --json).
type demoInfo struct {
	URL                string     `json:"url"`
	Issuer             string     `json:"issuer"`
	FHIRBase           string     `json:"fhir_base"`
	SMARTConfiguration string     `json:"smart_configuration"`
	Authorize          string     `json:"authorize"`
	Token              string     `json:"token"`
	DemoEHR            string     `json:"demo_ehr"`
	Patients           int        `json:"patients"`
	Users              []demoUser `json:"users"`
	Client             struct {
		ClientID    string `json:"client_id"`
		RedirectURI string `json:"redirect_uri"`
		Scope       string `json:"scope"`
	} `json:"client"`
	// App is the built-in SMART app (a confidential backend-for-frontend
	// client whose secret stays inside the process).
	App struct {
		URL      string `json:"url"`
		ClientID string `json:"client_id"`
	} `json:"app"`
}

func newDemoCmd(e *env, g *globalFlags) *cobra.Command {
	var addr, appAddr string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the authorization server, the FHIR gateway and a demo EHR with demo users",
		Long: `Start the authorization server, the FHIR gateway and a small in-memory
FHIR R4 "legacy EHR" that accepts only HTTP Basic (the gateway injects the
credentials), seed a clinician, a patient user, the demo patients in the
picker and a public demo client, start the demo SMART app (a
backend-for-frontend on its own loopback port, --app-addr), print the URLs
and credentials (with --json as one JSON object on the first line), then
serve until interrupted. Passwords are new on every start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), e, g, addr, appAddr, asJSON)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "listen address host:port (default 127.0.0.1:8080)")
	cmd.Flags().StringVar(&appAddr, "app-addr", "127.0.0.1:0", "loopback listen address of the demo SMART app")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the demo details as one JSON line first")
	return cmd
}

func runDemo(ctx context.Context, e *env, g *globalFlags, addr, appAddr string, asJSON bool) error {
	ehrPass := secret.Token()
	ehr, err := demoehr.New(demoehr.Options{Username: demoEHRUser, Password: ehrPass, Now: e.now})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo EHR listener: %w", err)
	}
	ehrURL := "http://" + ln.Addr().String()
	ehrSrv := &http.Server{Handler: ehr, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = ehrSrv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ehrSrv.Shutdown(sctx)
	}()

	ov := map[string]string{
		"gateway.upstream":      ehrURL,
		"gateway.upstream_auth": "basic:" + demoEHRUser + ":" + ehrPass,
	}
	if addr != "" {
		ov["addr"] = addr
	}
	cfg, err := loadConfig(e, g, ov)
	if err != nil {
		return err
	}
	log := newLogger(e.stderr, cfg.Log.Level)
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Ready: e.stdout, Now: e.now})
	if err != nil {
		return err
	}
	info, err := seedDemo(ctx, e, a, ehr.Store().Patients())
	if err != nil {
		_ = a.Shutdown(context.Background())
		return err
	}
	info.DemoEHR = ehrURL
	stopApp, err := startDemoApp(ctx, e, a, appAddr, &info)
	if err != nil {
		_ = a.Shutdown(context.Background())
		return err
	}
	defer stopApp()
	if asJSON {
		if err := writeJSONLine(e.stdout, info); err != nil {
			return err
		}
	} else {
		printDemo(e.stdout, info)
	}
	return a.Run(ctx)
}

// seedDemo (re)creates the demo users and client and fills the patient
// picker. Existing demo accounts get new passwords.
func seedDemo(ctx context.Context, e *env, a *app.App, patients []demoehr.PatientInfo) (demoInfo, error) {
	st := a.Store()
	now := e.now()
	var info demoInfo
	info.URL, info.Issuer, info.FHIRBase = a.URL(), a.Issuer(), a.FHIRBase()
	info.SMARTConfiguration = a.FHIRBase() + "/.well-known/smart-configuration"
	info.Authorize, info.Token = a.Issuer()+"/authorize", a.Issuer()+"/token"
	for _, p := range patients {
		if err := app.AddPatient(ctx, st, storage.Patient{ID: p.ID, Name: p.Name, BirthDate: p.BirthDate}); err != nil {
			return info, err
		}
	}
	info.Patients = len(patients)
	for _, u := range []app.NewUser{
		{Username: "clinician", Role: storage.RoleClinician, FHIRUser: "Practitioner/pr-01"},
		{Username: "patient", Role: storage.RolePatient, FHIRUser: "Patient/" + patients[0].ID},
	} {
		if err := app.DeleteUser(ctx, st, u.Username); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return info, err
		}
		u.Password = secret.New(12)
		if _, err := app.CreateUser(ctx, st, u, e.passwordParams, now); err != nil {
			return info, err
		}
		info.Users = append(info.Users, demoUser{Username: u.Username, Password: u.Password, Role: string(u.Role), FHIRUser: u.FHIRUser})
	}
	clients, err := st.ListClients(ctx)
	if err != nil {
		return info, err
	}
	for _, c := range clients {
		if c.Name == demoClientName {
			if err := app.DeleteClient(ctx, st, c.ID); err != nil {
				return info, err
			}
		}
	}
	c, _, err := app.CreateClient(ctx, st, clientreg.Metadata{
		ClientName: demoClientName, RedirectURIs: []string{demoRedirectURI}, Scope: demoClientScope,
		TokenEndpointAuthMethod: "none",
	}, now)
	if err != nil {
		return info, err
	}
	info.Client.ClientID, info.Client.RedirectURI, info.Client.Scope = c.ID, demoRedirectURI, demoClientScope
	return info, nil
}

// startDemoApp registers the demo SMART app as a confidential client and
// serves it on appAddr (a loopback address).
func startDemoApp(ctx context.Context, e *env, a *app.App, appAddr string, info *demoInfo) (stop func(), err error) {
	host, _, err := net.SplitHostPort(appAddr)
	if err != nil || (host != "localhost" && !isLoopbackIP(host)) {
		return nil, fmt.Errorf("--app-addr %q must be a loopback host:port", appAddr)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", appAddr)
	if err != nil {
		return nil, fmt.Errorf("demo app listener: %w", err)
	}
	appURL := "http://" + ln.Addr().String()
	st := a.Store()
	clients, err := st.ListClients(ctx)
	if err != nil {
		ln.Close()
		return nil, err
	}
	for _, c := range clients {
		if c.Name == demoAppName {
			if err := app.DeleteClient(ctx, st, c.ID); err != nil {
				ln.Close()
				return nil, err
			}
		}
	}
	c, clientSecret, err := app.CreateClient(ctx, st, clientreg.Metadata{
		ClientName: demoAppName, RedirectURIs: []string{appURL + "/callback"},
		Scope: strings.Join(demoapp.DefaultScopes, " "), TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes: []string{"authorization_code", "refresh_token"},
	}, e.now())
	if err != nil {
		ln.Close()
		return nil, err
	}
	h, err := demoapp.New(demoapp.Options{
		URL: appURL, FHIRBase: a.FHIRBase(), Issuer: a.Issuer(),
		ClientID: c.ID, ClientSecret: clientSecret, Now: e.now,
		Logger: newLogger(e.stderr, "info"),
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	info.App.URL, info.App.ClientID = appURL, c.ID
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}

func isLoopbackIP(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func printDemo(w io.Writer, info demoInfo) {
	fmt.Fprintf(w, "fhirgate demo\n")
	fmt.Fprintf(w, "  demo SMART app:      %s  (open this in a browser and sign in)\n", info.App.URL)
	fmt.Fprintf(w, "  issuer:              %s\n", info.Issuer)
	fmt.Fprintf(w, "  FHIR base (gateway): %s\n", info.FHIRBase)
	fmt.Fprintf(w, "  SMART configuration: %s\n", info.SMARTConfiguration)
	fmt.Fprintf(w, "  demo EHR (Basic auth, reached only through the gateway): %s\n", info.DemoEHR)
	fmt.Fprintf(w, "  %d demo patients in the picker\n", info.Patients)
	for _, u := range info.Users {
		fmt.Fprintf(w, "  user %-10s password %s  (%s, %s)\n", u.Username, u.Password, u.Role, u.FHIRUser)
	}
	fmt.Fprintf(w, "  public client %s  redirect_uri %s\n  scope %q\n", info.Client.ClientID, info.Client.RedirectURI, info.Client.Scope)
}
