// Package version says which mqhub this is. Release builds set it at link
// time:
//
//	go build -ldflags "-X github.com/mqhub/mqhub/internal/version.version=v1.2.3" ./cmd/mqhub
//
// Other builds fall back to what the Go toolchain recorded in the binary:
// the module version (`go install ...@v1.2.3`, or the pseudo-version that
// `go build` derives from the VCS), else the VCS revision, else "devel".
package version

import (
	"runtime/debug"
	"sync"
)

// version is set with -ldflags -X; empty in other builds.
var version string

var resolved = sync.OnceValue(func() string {
	bi, _ := debug.ReadBuildInfo() // nil when the binary carries none
	return resolve(version, bi)
})

// String is mqhub's version, e.g. "v1.2.3", "devel-1a2b3c4d5e6f-dirty" or
// "devel".
func String() string { return resolved() }

// resolve picks the version from the link-time value, else the build info.
func resolve(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	if bi == nil {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v // already carries the revision and +dirty when derived from the VCS
	}
	var revision string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision == "" {
		return "devel"
	}
	v := "devel-" + revision[:min(12, len(revision))]
	if modified {
		v += "-dirty"
	}
	return v
}
