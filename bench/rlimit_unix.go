//go:build unix

package bench

import (
	"fmt"
	"syscall"
)

// RaiseOpenFiles raises the soft RLIMIT_NOFILE to the hard limit and returns
// the new soft limit. The conns scenario needs one descriptor per
// connection, and child brokers started by Compare inherit the raised limit.
func RaiseOpenFiles() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}
