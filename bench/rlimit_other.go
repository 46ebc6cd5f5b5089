//go:build !unix

package bench

// RaiseOpenFiles is a no-op where RLIMIT_NOFILE does not exist; it reports
// no known limit.
func RaiseOpenFiles() (uint64, error) { return 0, nil }
