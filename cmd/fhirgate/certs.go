package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/devcerts"
)

func newCertsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "Development certificates"}
	var out string
	var hosts []string
	var force, asJSON bool
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Create a local development CA and a server certificate signed by it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := devcerts.GenerateWith(out, devcerts.Options{Hosts: hosts, Now: e.now(), Overwrite: force})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, map[string]any{
					"ca": f.CA, "ca_key": f.CAKey, "cert": f.Cert, "key": f.Key,
					"hosts": f.Hosts, "not_after": timeOrEmpty(f.NotAfter), "ca_sha256": f.CASHA256,
				})
			}
			fmt.Fprintf(e.stdout, "CA certificate: %s (SHA-256 %s)\nserver certificate: %s\nserver key: %s\nhosts: %v\n",
				f.CA, f.CASHA256, f.Cert, f.Key, f.Hosts)
			fmt.Fprintf(e.stdout, "serve with: FHIRGATE_TLS_CERT_FILE=%s FHIRGATE_TLS_KEY_FILE=%s fhirgate serve --addr 127.0.0.1:8443\n", f.Cert, f.Key)
			return nil
		},
	}
	dev.Flags().StringVar(&out, "out", "", "output directory (required)")
	dev.Flags().StringArrayVar(&hosts, "host", nil, "DNS name or IP the certificate covers (repeatable; default localhost, 127.0.0.1, ::1)")
	dev.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	dev.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = dev.MarkFlagRequired("out")
	cmd.AddCommand(dev)
	return cmd
}
