package roles

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Client limits: the defaults of go-tuf v2's updater (metadata/config.New)
// and of tuf-js 5 (dist/config.js defaultConfig). Both clients ship the same
// figures; rootkeeper applies them to every repository it verifies or
// writes. docs/client-rules.md lists them with their sources.
const (
	// RootMaxLength bounds every N.root.json (rootMaxLength).
	RootMaxLength = 512000
	// TimestampMaxLength bounds timestamp.json (timestampMaxLength).
	TimestampMaxLength = 16384
	// SnapshotMaxLength bounds the snapshot when the timestamp lists no
	// length for it; with a length, clients read exactly that many bytes.
	SnapshotMaxLength = 2000000
	// TargetsMaxLength bounds targets and every delegated targets role
	// when the snapshot lists no length for it (clients use the listed
	// length when there is one).
	TargetsMaxLength = 5000000
	// MaxRootRotations is how many newer root versions a client fetches
	// in one update (maxRootRotations).
	MaxRootRotations = 256
	// MaxDelegations is how many roles, besides targets, a client visits
	// in its pre-order search for one target (maxDelegations): the search
	// stops once 1+MaxDelegations roles were visited, so a role at
	// delegation depth 33 or deeper is never loaded.
	MaxDelegations = 32
	// MaxSafeInteger is the largest integer JavaScript (tuf-js) reads
	// exactly: 2^53-1. Larger versions, lengths or thresholds are rounded
	// when tuf-js parses a file, so its signature check fails.
	MaxSafeInteger = 1<<53 - 1
)

// errTooLarge reports a file above the limit it was read with.
type errTooLarge struct {
	name  string
	size  int64 // the file's size, or 0 if only known to be above limit
	limit int64
}

func (e *errTooLarge) Error() string {
	return fmt.Sprintf("%s %s, above the limit of %d", e.name, e.sizeText(), e.limit)
}

// sizeText is "is 20480 bytes" or "is over 16384 bytes".
func (e *errTooLarge) sizeText() string {
	if e.size > e.limit {
		return fmt.Sprintf("is %d bytes", e.size)
	}
	return fmt.Sprintf("is over %d bytes", e.limit)
}

// readBounded reads the file name of fsys, at most limit+1 bytes of it: a
// longer file gives an *errTooLarge without being read further (a regular
// file whose size says so is not read at all). Reads through a ReadOnce
// file system are shared.
func readBounded(fsys fs.FS, name string, limit int64) ([]byte, error) {
	if c, ok := fsys.(*cachedFS); ok {
		return c.readBounded(name, limit)
	}
	return readLimited(fsys, name, limit)
}

func readLimited(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
		return nil, &errTooLarge{name: name, size: fi.Size(), limit: limit}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, &errTooLarge{name: name, limit: limit}
	}
	return data, nil
}

func tooLarge(err error) (*errTooLarge, bool) {
	var e *errTooLarge
	ok := errors.As(err, &e)
	return e, ok
}

// metaLimit is the most bytes a client reads of a metadata file: the
// length its parent lists, or the client default for role.
func metaLimit(role string, listed int64) int64 {
	if listed > 0 {
		return listed
	}
	switch role {
	case metadata.ROOT:
		return RootMaxLength
	case metadata.TIMESTAMP:
		return TimestampMaxLength
	case metadata.SNAPSHOT:
		return SnapshotMaxLength
	}
	return TargetsMaxLength
}

// limitSource names a client default limit, for messages.
func limitSource(role string) string {
	kind := "targets"
	switch role {
	case metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT:
		kind = role
	}
	return fmt.Sprintf("the %d bytes go-tuf and tuf-js accept for %s metadata by default (%sMaxLength)", metaLimit(role, 0), kind, kind)
}
