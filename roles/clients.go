package roles

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
)

// ClientCheckOptions tune CheckClients.
type ClientCheckOptions struct {
	// At is the reference time; zero means time.Now().
	At time.Time
	// Before is the repository as clients saw it before the change (the
	// directory on disk); nil means there was none.
	Before fs.FS
	// Cache, shared with Verify and CheckVersions over the same files,
	// takes each step of go-tuf's client (and each parse) once; nil means
	// a cache for this call only.
	Cache *Cache
}

// CheckClients runs the TUF client workflow of go-tuf's updater (spec
// sections 5.3 to 5.6: root chain, timestamp, snapshot, targets, with the
// updater's local-cache and length rules) over the repository in fsys as
// clients in every state would meet it:
//
//   - a fresh client shipped with 1.root.json, through the whole workflow;
//   - a client shipped with each later root version published before the
//     change (those in opts.Before): a client may hold any of them, so the
//     root chain must be followable from each (TUF 5.3.4);
//   - if opts.Before is set, a client that updated against Before and now
//     updates again, keeping its trusted root, timestamp, snapshot and
//     targets between the two: versions must only grow, and when the
//     timestamp or snapshot keys rotated it must still recover (it drops
//     the metadata the new root no longer trusts, TUF 5.3.11).
//
// The clients run in memory on go-tuf's trustedmetadata, step for step
// as go-tuf v2's updater (loadRoot, loadTimestamp, loadSnapshot,
// loadTargets) does with its cache directory. Steps that clients in
// different states share (the same step of go-tuf from the same state
// with the same bytes) are taken once (see Cache). Each client that fails
// gives one Problem naming its starting state. The error is for I/O
// failures only.
func CheckClients(fsys fs.FS, opts ClientCheckOptions) ([]Problem, error) {
	at := opts.At
	if at.IsZero() {
		at = time.Now()
	}
	cache := cacheOrNew(opts.Cache)
	fsys = readOnce(fsys)
	if opts.Before != nil {
		opts.Before = readOnce(opts.Before)
	}
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
	if len(roots) > 0 {
		c := &memClient{cache: cache, root: roots[0]}
		if err := c.refresh(fsys, at); err != nil {
			probs = append(probs, clientErrProblem(fmt.Sprintf("a client shipped with root v1 (%s)", rootPath(1)), err))
		}
	}
	// Clients hold only published roots: those in Before.
	for i := 1; i < min(len(before), len(roots)); i++ {
		v := int64(i + 1)
		if err := followRoots(cache, roots, i, at); err != nil {
			probs = append(probs, clientErrProblem(fmt.Sprintf("a client shipped with root v%d (%s)", v, rootPath(v)), err))
		}
	}
	if len(before) == 0 {
		return probs, nil
	}
	c := &memClient{cache: cache, root: before[0]}
	if err := c.refresh(opts.Before, at); err != nil {
		// The repository on disk was already out of date (an expired
		// timestamp is what a publish fixes): a client last updated while
		// it was still valid.
		if ts, ok := readTimestampExpiry(cache, opts.Before); ok && ts.Before(at) {
			c = &memClient{cache: cache, root: before[0]}
			c.refresh(opts.Before, ts.Add(-time.Second)) //nolint:errcheck // best effort: whatever the client trusted stays in its cache
		}
	}
	kept := *c // what the client holds before it updates again
	if err := c.refresh(fsys, at); err != nil {
		probs = append(probs, clientErrProblem("a client that updated before this change (it keeps "+kept.state()+")", err))
	}
	return probs, nil
}

// followRoots replays the root chain from roots[from] (a client shipped
// with that version) to the newest, as go-tuf's updater does.
func followRoots(cache *Cache, roots [][]byte, from int, at time.Time) error {
	tm, err := newClient(cache, roots[from], at)
	if err != nil {
		return err
	}
	for _, data := range roots[from+1:] {
		if err := tm.updateRoot(data); err != nil {
			return err
		}
	}
	return nil
}

// memClient is a TUF client whose cache (go-tuf's local metadata
// directory) is in memory.
type memClient struct {
	cache                              *Cache
	root, timestamp, snapshot, targets []byte
}

// clientLimits are go-tuf's updater defaults (config.New).
var clientLimits = func() *config.UpdaterConfig {
	cfg, err := config.New(fetchBase, []byte("{}"))
	if err != nil {
		panic(err)
	}
	return cfg
}()

// refresh is go-tuf v2's Updater.Refresh against fsys with the cache in c.
func (c *memClient) refresh(fsys fs.FS, at time.Time) error {
	return safe(func() error {
		t, err := newClient(c.cache, c.root, at)
		if err != nil {
			return err
		}
		// loadRoot
		for v := t.tm.Root.Signed.Version + 1; v < t.tm.Root.Signed.Version+1+clientLimits.MaxRootRotations; v++ {
			data, err := fetch(fsys, rootPath(v), clientLimits.RootMaxLength)
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			if err != nil {
				return err
			}
			if err := t.updateRoot(data); err != nil {
				return err
			}
			c.root = data
		}
		// loadTimestamp: the cached one (if still valid) guards against
		// rollback, then the remote one.
		if c.timestamp != nil {
			if err := t.updateTimestamp(c.timestamp); err != nil && !errors.Is(err, &metadata.ErrRepository{}) {
				return err
			}
		}
		data, err := fetch(fsys, timestampPath(), clientLimits.TimestampMaxLength)
		if err != nil {
			return err
		}
		if err := t.updateTimestamp(data); err != nil {
			if !errors.Is(err, &metadata.ErrEqualVersionNumber{}) {
				return err
			}
		} else {
			c.timestamp = data
		}
		// loadSnapshot: the cached one if it is still the final one.
		localOK := false
		if c.snapshot != nil {
			if err := t.updateSnapshot(c.snapshot, true); err == nil {
				localOK = true
			} else if !errors.Is(err, &metadata.ErrRepository{}) {
				return err
			}
		}
		if !localOK {
			sm := t.tm.Timestamp.Signed.Meta["snapshot.json"]
			length := sm.Length
			if length == 0 {
				length = clientLimits.SnapshotMaxLength
			}
			data, err := fetch(fsys, rolePath(metadata.SNAPSHOT, sm.Version, t.tm.Root.Signed.ConsistentSnapshot), length)
			if err != nil {
				return err
			}
			if err := t.updateSnapshot(data, false); err != nil {
				return err
			}
			c.snapshot = data
		}
		// loadTargets("targets", "root")
		if c.targets != nil {
			if err := t.updateTargets(c.targets); err == nil {
				return nil
			} else if !errors.Is(err, &metadata.ErrRepository{}) {
				return err
			}
		}
		tmeta, ok := t.tm.Snapshot.Signed.Meta["targets.json"]
		if !ok {
			return fmt.Errorf("role targets not found in snapshot")
		}
		length := tmeta.Length
		if length == 0 {
			length = clientLimits.TargetsMaxLength
		}
		data, err = fetch(fsys, rolePath(metadata.TARGETS, tmeta.Version, t.tm.Root.Signed.ConsistentSnapshot), length)
		if err != nil {
			return err
		}
		if err := t.updateTargets(data); err != nil {
			return err
		}
		c.targets = data
		return nil
	})
}

// fetch reads a metadata file as go-tuf's fetcher does: at most maxLength
// bytes, and a longer file is an error.
func fetch(fsys fs.FS, p string, maxLength int64) ([]byte, error) {
	data, err := readBounded(fsys, p, maxLength)
	if e, big := tooLarge(err); big {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s %s, more than the %d go-tuf clients accept", p, e.sizeText(), maxLength)}
	}
	return data, err
}

// state describes what the client holds: "root v3, timestamp v9, …".
func (c *memClient) state() string {
	var parts []string
	add := func(role string, v int64, err error) {
		if err == nil && v > 0 {
			parts = append(parts, fmt.Sprintf("%s v%d", role, v))
		}
	}
	if md, err := parseCached[metadata.RootType](c.cache, c.root); err == nil {
		add(metadata.ROOT, md.Signed.Version, nil)
	}
	if c.timestamp != nil {
		md, err := parseCached[metadata.TimestampType](c.cache, c.timestamp)
		if err == nil {
			add(metadata.TIMESTAMP, md.Signed.Version, nil)
		}
	}
	if c.snapshot != nil {
		md, err := parseCached[metadata.SnapshotType](c.cache, c.snapshot)
		if err == nil {
			add(metadata.SNAPSHOT, md.Signed.Version, nil)
		}
	}
	if c.targets != nil {
		md, err := parseCached[metadata.TargetsType](c.cache, c.targets)
		if err == nil {
			add(metadata.TARGETS, md.Signed.Version, nil)
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// readRoots returns the bytes of 1.root.json, 2.root.json, … up to the
// first missing version.
func readRoots(fsys fs.FS) ([][]byte, error) {
	var out [][]byte
	for v := int64(1); v < maxRootVersions; v++ {
		data, err := readBounded(fsys, rootPath(v), RootMaxLength)
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

func readTimestampExpiry(cache *Cache, fsys fs.FS) (time.Time, bool) {
	data, err := readBounded(fsys, timestampPath(), TimestampMaxLength)
	if err != nil {
		return time.Time{}, false
	}
	md, err := parseCached[metadata.TimestampType](cache, data)
	if err != nil {
		return time.Time{}, false
	}
	return md.Signed.Expires, true
}

// fetchBase is the metadata URL the client limits are made for.
const fetchBase = "https://preflight.rootkeeper.invalid/metadata/"

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
