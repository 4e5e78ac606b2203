package ceremony

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOf(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v1.2.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2025-01-31T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	if got, want := versionOf(bi, true), "v1.2.0 rev 0123456789abcdef0123456789abcdef01234567 2025-01-31T10:00:00Z dirty"; got != want {
		t.Errorf("versionOf = %q, want %q", got, want)
	}
	// Built from another module (softhsm-test): rootkeeper's own entry.
	bi = &debug.BuildInfo{Main: debug.Module{Path: modulePath + "/softhsm-test", Version: "(devel)"},
		Deps: []*debug.Module{{Path: modulePath, Version: "v0.9.0"}}}
	if got := versionOf(bi, true); got != "v0.9.0" {
		t.Errorf("as a dependency: %q", got)
	}
	if got := versionOf(nil, false); !strings.Contains(got, "unknown") {
		t.Errorf("no build info: %q", got)
	}
	if Version() == "" {
		t.Error("Version is empty")
	}
}
