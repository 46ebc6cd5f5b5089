package version

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	cases := []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		{"link-time value wins", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.9"}}, "v1.2.3"},
		{"no build info", "", nil, "devel"},
		{"go install at a tag", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"pseudo-version from go build", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203211254-1a2b3c4d5e6f+dirty"}}, "v0.0.0-20261203211254-1a2b3c4d5e6f+dirty"},
		{"revision only", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("1a2b3c4d5e6f7a8b9c0d", "false")}, "devel-1a2b3c4d5e6f"},
		{"modified tree", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("1a2b3c4d5e6f7a8b9c0d", "true")}, "devel-1a2b3c4d5e6f-dirty"},
		{"go run, no VCS stamp", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	}
	for _, tc := range cases {
		if got := resolve(tc.linked, tc.bi); got != tc.want {
			t.Errorf("%s: resolve = %q, want %q", tc.name, got, tc.want)
		}
	}
}
