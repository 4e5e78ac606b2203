package fleet

import (
	"os"
	"runtime/debug"
)

// fleetGCPercent is the garbage collector's target while many
// repositories are worked on (ResignBatch, StatusMany). Each repository
// allocates about a megabyte of short-lived parse trees against a live
// heap of a few megabytes, so at Go's default (100) the collector runs
// every few repositories and takes about a sixth of the CPU; at 400 the
// live heap stays in the tens of megabytes and the collector's share
// drops to a few percent (docs/performance.md).
const fleetGCPercent = 400

// fleetGC raises the collector's target for fleet work, unless GOGC says
// otherwise, and returns what restores it.
func fleetGC() (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	old := debug.SetGCPercent(fleetGCPercent)
	if old > fleetGCPercent || old < 0 {
		debug.SetGCPercent(old) // already laxer (or off): leave it
		return func() {}
	}
	return func() { debug.SetGCPercent(old) }
}
