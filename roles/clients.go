package roles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// ClientCheckOptions tune CheckClients.
type ClientCheckOptions struct {
	// At is the reference time; zero means time.Now().
	At time.Time
	// Before is the repository as clients saw it before the change (the
	// directory on disk); nil means there was none.
	Before fs.FS
}

// CheckClients runs go-tuf's updater (the TUF client workflow of spec
// sections 5.3 to 5.6: root chain, timestamp, snapshot, targets) over the
// repository in fsys as clients in every state would meet it:
//
//   - one fresh client per root version published before the change
//     (those in opts.Before; 1.root.json if there is none), bootstrapped
//     with that version: a client may have been shipped with any of them,
//     so the chain must be followable from each (TUF 5.3.4);
//   - if opts.Before is set, a client that updated against Before and now
//     updates again, keeping its trusted root, timestamp, snapshot and
//     targets between the two: versions must only grow, and when the
//     timestamp or snapshot keys rotated it must still recover (it drops
//     the metadata the new root no longer trusts, TUF 5.3.11).
//
// Each client that fails gives one Problem naming its starting state. The
// error is for I/O failures only.
func CheckClients(fsys fs.FS, opts ClientCheckOptions) ([]Problem, error) {
	at := opts.At
	if at.IsZero() {
		at = time.Now()
	}
	tmp, err := os.MkdirTemp("", "rootkeeper-clients-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	var probs []Problem
	roots, err := readRoots(fsys)
	if err != nil {
		return nil, err
	}
	var before [][]byte
	if opts.Before != nil {
		if before, err = readRoots(opts.Before); err != nil {
			return nil, err
		}
	}
	// Clients hold only published roots: those in Before (at least v1).
	shipped := max(1, len(before))
	for i, data := range roots[:min(shipped, len(roots))] {
		v := int64(i + 1)
		cache := filepath.Join(tmp, fmt.Sprintf("fresh-%d", v))
		if err := refreshClient(fsys, data, cache, at); err != nil {
			probs = append(probs, clientErrProblem(fmt.Sprintf("a client shipped with root v%d (%s)", v, rootPath(v)), err))
		}
	}
	if len(before) == 0 {
		return probs, nil
	}
	cache := filepath.Join(tmp, "stateful")
	if err := refreshClient(opts.Before, before[0], cache, at); err != nil {
		// The repository on disk was already out of date (an expired
		// timestamp is what a publish fixes): a client last updated while
		// it was still valid.
		if ts, ok := readTimestampExpiry(opts.Before); ok && ts.Before(at) {
			refreshClient(opts.Before, before[0], cache, ts.Add(-time.Second)) //nolint:errcheck // best effort: whatever the client trusted stays in its cache
		}
	}
	state := cachedState(cache)
	root, err := os.ReadFile(filepath.Join(cache, "metadata", "root.json"))
	if err != nil {
		root = before[0]
	}
	if err := refreshClient(fsys, root, cache, at); err != nil {
		probs = append(probs, clientErrProblem("a client that updated before this change (it keeps "+state+")", err))
	}
	return probs, nil
}

// readRoots returns the bytes of 1.root.json, 2.root.json, … up to the
// first missing version.
func readRoots(fsys fs.FS) ([][]byte, error) {
	var out [][]byte
	for v := int64(1); v < maxRootVersions; v++ {
		data, err := fs.ReadFile(fsys, rootPath(v))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	return out, nil
}

func readTimestampExpiry(fsys fs.FS) (time.Time, bool) {
	data, err := fs.ReadFile(fsys, timestampPath())
	if err != nil {
		return time.Time{}, false
	}
	md, err := parse[metadata.TimestampType](data)
	if err != nil {
		return time.Time{}, false
	}
	return md.Signed.Expires, true
}

// cachedState describes what a client cache holds: "root v3, timestamp v9, …".
func cachedState(cache string) string {
	vs := readCachedVersions(filepath.Join(cache, "metadata"))
	var parts []string
	for _, r := range []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		if v, ok := vs[r]; ok {
			parts = append(parts, fmt.Sprintf("%s v%d", r, v))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

func readCachedVersions(dir string) map[string]int64 {
	out := map[string]int64{}
	for _, r := range []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		data, err := os.ReadFile(filepath.Join(dir, r+".json"))
		if err != nil {
			continue
		}
		var v int64
		switch r {
		case metadata.ROOT:
			if md, err := parse[metadata.RootType](data); err == nil {
				v = md.Signed.Version
			}
		case metadata.TIMESTAMP:
			if md, err := parse[metadata.TimestampType](data); err == nil {
				v = md.Signed.Version
			}
		case metadata.SNAPSHOT:
			if md, err := parse[metadata.SnapshotType](data); err == nil {
				v = md.Signed.Version
			}
		default:
			if md, err := parse[metadata.TargetsType](data); err == nil {
				v = md.Signed.Version
			}
		}
		if v > 0 {
			out[r] = v
		}
	}
	return out
}

// fsFetcher serves a repository's metadata/ directory to go-tuf.
type fsFetcher struct {
	fsys fs.FS
}

const fetchBase = "https://preflight.rootkeeper.invalid/metadata/"

func (f fsFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	name, ok := strings.CutPrefix(urlPath, fetchBase)
	if !ok || !fs.ValidPath(MetadataDir+"/"+name) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: urlPath}
	}
	data, err := fs.ReadFile(f.fsys, MetadataDir+"/"+name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: urlPath}
	}
	if err != nil {
		return nil, err
	}
	if maxLength > 0 && int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %d bytes, more than the %d the client accepts", name, len(data), maxLength)}
	}
	return data, nil
}

// refreshClient runs one go-tuf Refresh with its cache in dir, starting
// from the cached root if there is one, else from trusted.
func refreshClient(fsys fs.FS, trusted []byte, dir string, at time.Time) (err error) {
	mdDir := filepath.Join(dir, "metadata")
	if err := os.MkdirAll(mdDir, 0o700); err != nil {
		return err
	}
	if cached, err := os.ReadFile(filepath.Join(mdDir, "root.json")); err == nil {
		trusted = cached
	}
	cfg, err := config.New(fetchBase, trusted)
	if err != nil {
		return err
	}
	cfg.Fetcher = fsFetcher{fsys: fsys}
	cfg.LocalMetadataDir = mdDir
	cfg.LocalTargetsDir = filepath.Join(dir, "targets")
	cfg.RemoteTargetsURL = fetchBase + "../targets/"
	return safe(func() error {
		up, err := updater.New(cfg)
		if err != nil {
			return err
		}
		up.UnsafeSetRefTime(at)
		return up.Refresh()
	})
}

func clientErrProblem(who string, err error) Problem {
	rule := RuleClient
	hint := "run rootkeeper verify on the result to see which file breaks which rule"
	switch {
	case errors.Is(err, &metadata.ErrBadVersionNumber{}), errors.Is(err, &metadata.ErrEqualVersionNumber{}):
		rule = RuleVersion
		hint = "every change must give the changed metadata a higher version than clients already have"
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		rule = RuleExpired
		hint = "re-sign the expired role with a later expiry"
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		rule = RuleThreshold
		hint = "collect the missing signatures (a new root needs a threshold of the previous root's keys and of its own)"
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		rule = RuleLengthHash
		hint = "update and re-sign snapshot and timestamp after the files they name"
	}
	role := "repository"
	msg := err.Error()
	best := len(msg) + 1
	for _, r := range metadata.TOP_LEVEL_ROLE_NAMES {
		if i := strings.Index(msg, r); i >= 0 && i < best {
			role, best = r, i
		}
	}
	return Problem{Role: role, Rule: rule, Detail: fmt.Sprintf("%s would refuse it (go-tuf client): %v", who, err), Hint: hint}
}
