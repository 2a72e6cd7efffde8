//go:build unix

package filesink

import (
	"os"
	"syscall"
)

// lockExclusive takes a non-blocking exclusive flock on f, held until f is closed.
func lockExclusive(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
