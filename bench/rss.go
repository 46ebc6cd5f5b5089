package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ErrNoRSS is returned when a status file has no such line (a kernel
// thread, or a process that has exited and become a zombie).
var ErrNoRSS = errors.New("no RSS line in status")

// ReadRSS returns the resident set size of process pid in KiB, read from
// /proc/PID/status.
func ReadRSS(pid int) (int64, error) { return readStatusKB(pid, "VmRSS") }

// ReadRSSAnon returns the anonymous part of the resident set of process
// pid in KiB (heap and stacks; not memory-mapped files, which the kernel
// can reclaim).
func ReadRSSAnon(pid int) (int64, error) { return readStatusKB(pid, "RssAnon") }

func readStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read %s of pid %d: %w", field, pid, err)
	}
	defer f.Close()
	kb, err := parseStatusKB(f, field)
	if err != nil {
		return 0, fmt.Errorf("read %s of pid %d: %w", field, pid, err)
	}
	return kb, nil
}

// parseStatusKB extracts the "field:   1234 kB" value from a status file.
func parseStatusKB(r io.Reader, field string) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("malformed %s line %q", field, sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed %s line %q: %w", field, sc.Text(), err)
		}
		return kb, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, ErrNoRSS
}
