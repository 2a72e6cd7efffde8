// Command fhirgate is the SMART on FHIR authorization server: `fhirgate
// serve` runs it, the other commands prepare and inspect its store. The
// commands are thin: they parse flags, load the configuration and call
// internal/app.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fhirgate/fhirgate/internal/password"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		lookupEnv: os.LookupEnv, now: time.Now, passwordParams: password.Default,
	})
	stop()
	os.Exit(code)
}
