//go:build !unix

package filesink

import "os"

// lockExclusive is a no-op where flock is unavailable: run one writer per node.
func lockExclusive(*os.File) error { return nil }
