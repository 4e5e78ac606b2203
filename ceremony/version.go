package ceremony

import (
	"runtime/debug"
	"sync"
)

// Version returns the rootkeeper that is running, from the build
// information Go embeds: the main module's version ("v1.2.0", or
// "(devel)" for a build from a work tree) and, when the build knew it,
// the VCS revision, its time and whether the tree had uncommitted changes:
// "(devel) rev 0123abcd… 2025-01-31T10:00:00Z dirty". Every transcript
// entry records it, and rootkeeper --version prints it.
func Version() string {
	versionOnce.Do(func() { version = versionOf(debug.ReadBuildInfo()) })
	return version
}

var (
	versionOnce sync.Once
	version     string
)

// modulePath is rootkeeper's module: a binary built from another module
// (softhsm-test builds the command as a dependency) reports its version.
const modulePath = "github.com/rootkeeper/rootkeeper"

func versionOf(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return "unknown (no build information)"
	}
	v := bi.Main.Version
	if bi.Main.Path != modulePath {
		for _, m := range bi.Deps {
			if m.Path == modulePath {
				if v = m.Version; m.Replace != nil {
					v = m.Replace.Version
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "dirty"
			}
		}
	}
	if rev != "" {
		v += " rev " + rev
	}
	if at != "" {
		v += " " + at
	}
	if dirty != "" {
		v += " " + dirty
	}
	return v
}
