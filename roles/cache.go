package roles

import (
	"crypto"
	"crypto/sha256"
	"io/fs"
	"maps"
	"sync"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// Cache remembers, for the checks of one change (Verify, CheckClients and
// CheckVersions over the same files), what only depends on bytes that do
// not change meanwhile:
//
//   - each distinct file parsed once (by kind and SHA-256 of its bytes);
//   - the canonical JSON of each parsed file's signed part, encoded once;
//   - each signature checked once: (key, SHA-256 of the payload,
//     signature) → valid, valid only as raw r||s, or invalid;
//   - each step of go-tuf's client state machine (trustedmetadata.New,
//     UpdateRoot, UpdateTimestamp, UpdateSnapshot, UpdateTargets) taken
//     once from the same state with the same bytes at the same reference
//     time.
//
// The last one is what makes the client replays cheap while go-tuf stays
// the authority on client rules: a TrustedMetadata is entirely determined
// by its reference time and the bytes each of its roles was parsed from
// (go-tuf only ever replaces a role by the parse of the bytes it is given,
// never changes one), and each step is a deterministic function of that
// state and its input. So a step already taken from an equal state with
// equal bytes has the same outcome — the same new state and the same
// error — and is not taken again. Clients shipped with different root
// versions differ in their root chain; once they reach the same newest
// root they are in the same state, and timestamp, snapshot and targets are
// checked once for all of them.
//
// Parsed metadata handed out by a Cache is shared: nothing may change it.
// A Cache is safe for concurrent use. It holds every file it has seen, so
// use one per change and drop it afterwards.
type Cache struct {
	mu       sync.Mutex
	parsed   map[parseKey]parsedFile
	payloads map[any][]byte
	keys     map[keyKey]keyInfo
	sigs     map[sigKey]sigResult
	steps    map[stepKey]stepResult
}

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{
		parsed:   map[parseKey]parsedFile{},
		payloads: map[any][]byte{},
		keys:     map[keyKey]keyInfo{},
		sigs:     map[sigKey]sigResult{},
		steps:    map[stepKey]stepResult{},
	}
}

// uncached turns every cache off (nil): tests compare the checks with and
// without it.
var uncached bool

// cacheOrNew returns c, or a new Cache for one call when c is nil.
func cacheOrNew(c *Cache) *Cache {
	if uncached {
		return nil
	}
	if c == nil {
		return NewCache()
	}
	return c
}

type parseKey struct {
	kind string
	sum  [32]byte
}

type parsedFile struct {
	md  any
	err error
}

func kindOf[T metadata.Roles]() string {
	var zero T
	switch any(zero).(type) {
	case metadata.RootType:
		return metadata.ROOT
	case metadata.TimestampType:
		return metadata.TIMESTAMP
	case metadata.SnapshotType:
		return metadata.SNAPSHOT
	}
	return metadata.TARGETS
}

// parseCached is parse, once per distinct bytes in c (c may be nil).
func parseCached[T metadata.Roles](c *Cache, data []byte) (*metadata.Metadata[T], error) {
	if c == nil {
		return parse[T](data)
	}
	k := parseKey{kindOf[T](), sha256.Sum256(data)}
	c.mu.Lock()
	p, ok := c.parsed[k]
	c.mu.Unlock()
	if !ok {
		md, err := parse[T](data)
		p = parsedFile{md: md, err: err}
		c.mu.Lock()
		c.parsed[k] = p
		c.mu.Unlock()
	}
	if p.err != nil {
		return nil, p.err
	}
	return p.md.(*metadata.Metadata[T]), nil
}

// canonical returns the canonical JSON of signed, the signed part of the
// parsed metadata md; it is encoded once per md in c (c may be nil).
func (c *Cache) canonical(md any, signed any) ([]byte, error) {
	if c == nil || md == nil {
		return cjson.EncodeCanonical(signed)
	}
	c.mu.Lock()
	p, ok := c.payloads[md]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := cjson.EncodeCanonical(signed)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.payloads[md] = p
	c.mu.Unlock()
	return p, nil
}

// keyKey is everything of a TUF key that CryptoPublicKey and signature
// checks read.
type keyKey struct{ typ, scheme, public string }

type keyInfo struct {
	pub crypto.PublicKey
	fp  string
	err error
}

// key is CryptoPublicKey and fingerprint of k, once per distinct key in c.
func (c *Cache) key(k *metadata.Key) (crypto.PublicKey, string, error) {
	compute := func() keyInfo {
		pub, err := CryptoPublicKey(k)
		if err != nil {
			return keyInfo{err: err}
		}
		fp, err := fingerprint(pub)
		return keyInfo{pub: pub, fp: fp, err: err}
	}
	if c == nil {
		ki := compute()
		return ki.pub, ki.fp, ki.err
	}
	kk := keyKey{k.Type, k.Scheme, k.Value.PublicKey}
	c.mu.Lock()
	ki, ok := c.keys[kk]
	c.mu.Unlock()
	if !ok {
		ki = compute()
		c.mu.Lock()
		c.keys[kk] = ki
		c.mu.Unlock()
	}
	return ki.pub, ki.fp, ki.err
}

type sigKey struct {
	key     keyKey
	payload [32]byte
	sig     string
}

type sigResult struct{ valid, lax bool }

// checkSig verifies sig by k over payload as countValid does (valid: a
// signature clients accept; lax: valid only as raw ECDSA r||s), once per
// distinct key, payload and signature in c (c may be nil).
func (c *Cache) checkSig(k *metadata.Key, pub crypto.PublicKey, payload, sig []byte) sigResult {
	compute := func() sigResult {
		if verifySignature(k, payload, sig, false) == nil {
			return sigResult{valid: true}
		}
		return sigResult{lax: laxVerify(pub, k, payload, sig)}
	}
	if c == nil {
		return compute()
	}
	sk := sigKey{keyKey{k.Type, k.Scheme, k.Value.PublicKey}, sha256.Sum256(payload), string(sig)}
	c.mu.Lock()
	r, ok := c.sigs[sk]
	c.mu.Unlock()
	if !ok {
		r = compute()
		c.mu.Lock()
		c.sigs[sk] = r
		c.mu.Unlock()
	}
	return r
}

// clientState identifies a go-tuf TrustedMetadata: its reference time and
// the SHA-256 of the bytes its root, timestamp, snapshot and top-level
// targets were parsed from (zero: not loaded).
type clientState struct {
	refSec  int64
	refNsec int
	root    [32]byte
	ts, sn  [32]byte
	targets [32]byte
}

type stepOp uint8

const (
	opNew stepOp = iota + 1
	opRoot
	opTimestamp
	opSnapshot
	opSnapshotTrusted
	opTargets
)

type stepKey struct {
	from clientState
	op   stepOp
	data [32]byte
}

type stepResult struct {
	to  clientState
	tm  trustedmetadata.TrustedMetadata
	err error
}

// tmClient is go-tuf's trustedmetadata.TrustedMetadata whose steps are
// taken through a Cache (see Cache). Steps the cache does not model (the
// delegated targets roles) are taken directly and end the memoization of
// that client.
type tmClient struct {
	c    *Cache
	tm   *trustedmetadata.TrustedMetadata
	st   clientState
	memo bool
}

// newClient is trustedmetadata.New(root) with RefTime set to ref.
func newClient(c *Cache, root []byte, ref time.Time) (*tmClient, error) {
	t := &tmClient{c: c, st: clientState{refSec: ref.Unix(), refNsec: ref.Nanosecond()}, memo: c != nil}
	err := t.step(opNew, root, func(tm *trustedmetadata.TrustedMetadata) (*trustedmetadata.TrustedMetadata, error) {
		n, err := trustedmetadata.New(root)
		if err != nil {
			return nil, err
		}
		n.RefTime = ref
		return n, nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tmClient) updateRoot(data []byte) error {
	return t.step(opRoot, data, func(tm *trustedmetadata.TrustedMetadata) (*trustedmetadata.TrustedMetadata, error) {
		_, err := tm.UpdateRoot(data)
		return tm, err
	})
}

func (t *tmClient) updateTimestamp(data []byte) error {
	return t.step(opTimestamp, data, func(tm *trustedmetadata.TrustedMetadata) (*trustedmetadata.TrustedMetadata, error) {
		_, err := tm.UpdateTimestamp(data)
		return tm, err
	})
}

func (t *tmClient) updateSnapshot(data []byte, trusted bool) error {
	op := opSnapshot
	if trusted {
		op = opSnapshotTrusted
	}
	return t.step(op, data, func(tm *trustedmetadata.TrustedMetadata) (*trustedmetadata.TrustedMetadata, error) {
		_, err := tm.UpdateSnapshot(data, trusted)
		return tm, err
	})
}

func (t *tmClient) updateTargets(data []byte) error {
	return t.step(opTargets, data, func(tm *trustedmetadata.TrustedMetadata) (*trustedmetadata.TrustedMetadata, error) {
		_, err := tm.UpdateTargets(data)
		return tm, err
	})
}

// updateDelegated is UpdateDelegatedTargets, never memoized.
func (t *tmClient) updateDelegated(data []byte, name, delegator string) error {
	t.memo = false
	return safe(func() error { _, err := t.tm.UpdateDelegatedTargets(data, name, delegator); return err })
}

// step takes one step of the client (do changes tm and returns it), or
// replays its outcome from the cache.
func (t *tmClient) step(op stepOp, data []byte, do func(*trustedmetadata.TrustedMetadata) (*trustedmetadata.TrustedMetadata, error)) error {
	if !t.memo {
		return safe(func() error {
			tm, err := do(t.tm)
			if tm != nil {
				t.tm = tm
			}
			return err
		})
	}
	sum := sha256.Sum256(data)
	k := stepKey{from: t.st, op: op, data: sum}
	t.c.mu.Lock()
	r, ok := t.c.steps[k]
	t.c.mu.Unlock()
	if ok {
		tm := r.tm
		tm.Targets = maps.Clone(r.tm.Targets)
		t.tm, t.st = &tm, r.to
		return r.err
	}
	var before trustedmetadata.TrustedMetadata
	var beforeTargets *metadata.Metadata[metadata.TargetsType]
	if t.tm != nil {
		before = *t.tm
		beforeTargets = t.tm.Targets[metadata.TARGETS]
	}
	err := safe(func() error {
		tm, err := do(t.tm)
		if tm != nil {
			t.tm = tm
		}
		return err
	})
	if t.tm == nil { // New failed: nothing to remember but the error
		t.c.mu.Lock()
		t.c.steps[k] = stepResult{to: t.st, err: err}
		t.c.mu.Unlock()
		return err
	}
	// go-tuf replaces a role only by the parse of the bytes it was given.
	to := t.st
	if t.tm.Root != before.Root {
		to.root = sum
	}
	if t.tm.Timestamp != before.Timestamp {
		to.ts = sum
	}
	if t.tm.Snapshot != before.Snapshot {
		to.sn = sum
	}
	if t.tm.Targets[metadata.TARGETS] != beforeTargets {
		to.targets = sum
	}
	t.c.adopt(t.tm, &before, beforeTargets, sum)
	if len(t.tm.Targets) > 1 || (len(t.tm.Targets) == 1 && t.tm.Targets[metadata.TARGETS] == nil) ||
		!t.tm.RefTime.Equal(time.Unix(t.st.refSec, int64(t.st.refNsec))) {
		t.memo = false // a state this cache does not describe
		return err
	}
	saved := *t.tm
	saved.Targets = maps.Clone(t.tm.Targets)
	t.c.mu.Lock()
	t.c.steps[k] = stepResult{to: to, tm: saved, err: err}
	t.c.mu.Unlock()
	t.st = to
	return err
}

// adopt keeps, as the parse of the bytes whose SHA-256 is sum, the role a
// client step has just trusted (tm against its state before). go-tuf
// replaces a role only by metadata.X().FromBytes of the bytes it was
// given, which is exactly parse (both decode into an empty Metadata): so
// Verify's scan of the same bytes takes go-tuf's parse instead of
// decoding the file a second time. An existing entry is kept.
func (c *Cache) adopt(tm, before *trustedmetadata.TrustedMetadata, beforeTargets *metadata.Metadata[metadata.TargetsType], sum [32]byte) {
	keep := func(kind string, md any) {
		k := parseKey{kind, sum}
		c.mu.Lock()
		if _, ok := c.parsed[k]; !ok {
			c.parsed[k] = parsedFile{md: md}
		}
		c.mu.Unlock()
	}
	switch {
	case tm.Root != before.Root:
		keep(metadata.ROOT, tm.Root)
	case tm.Timestamp != before.Timestamp:
		keep(metadata.TIMESTAMP, tm.Timestamp)
	case tm.Snapshot != before.Snapshot:
		keep(metadata.SNAPSHOT, tm.Snapshot)
	case tm.Targets[metadata.TARGETS] != beforeTargets:
		keep(metadata.TARGETS, tm.Targets[metadata.TARGETS])
	}
}

// VerifySignature is VerifySignature (rootkeeper's own rule for the
// signatures it makes: ECDSA in DER, an RSA-PSS salt as long as the hash),
// always computed, never taken from c. A signature it finds valid is also
// valid for the client rules Verify applies (they only accept more RSA-PSS
// salt lengths), so c remembers that result for exactly this key, payload
// and signature: the preflight of the same change does not check it again.
// c may be nil.
func (c *Cache) VerifySignature(k *metadata.Key, payload, sig []byte) error {
	if err := verifySignature(k, payload, sig, true); err != nil {
		return err
	}
	c.noteValid(k, payload, sig)
	return nil
}

// noteValid records that sig by k over payload passed verifySignature
// with strictSalt (which implies the client rules' check).
func (c *Cache) noteValid(k *metadata.Key, payload, sig []byte) {
	if c == nil || k == nil {
		return
	}
	sk := sigKey{keyKey{k.Type, k.Scheme, k.Value.PublicKey}, sha256.Sum256(payload), string(sig)}
	c.mu.Lock()
	c.sigs[sk] = sigResult{valid: true}
	c.mu.Unlock()
}

// cachedFS reads each file of fsys once.
type cachedFS struct {
	fsys  fs.FS
	mu    sync.Mutex
	files map[string]cachedRead
}

type cachedRead struct {
	data []byte
	err  error
}

// ReadOnce returns fsys reading each file once (ReadFile; Open, Stat and
// ReadDir go to fsys): for the checks of one change, which read the same
// files again and again. The bytes it returns are shared and must not be
// changed, and fsys must not change while it is in use.
func ReadOnce(fsys fs.FS) fs.FS { return readOnce(fsys) }

func readOnce(fsys fs.FS) *cachedFS {
	if c, ok := fsys.(*cachedFS); ok {
		return c
	}
	return &cachedFS{fsys: fsys, files: map[string]cachedRead{}}
}

func (c *cachedFS) Open(name string) (fs.File, error) { return c.fsys.Open(name) }

func (c *cachedFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(c.fsys, name) }

func (c *cachedFS) Stat(name string) (fs.FileInfo, error) { return fs.Stat(c.fsys, name) }

func (c *cachedFS) ReadFile(name string) ([]byte, error) {
	c.mu.Lock()
	r, ok := c.files[name]
	c.mu.Unlock()
	if _, big := tooLarge(r.err); !ok || big {
		r.data, r.err = fs.ReadFile(c.fsys, name)
		c.mu.Lock()
		c.files[name] = r
		c.mu.Unlock()
	}
	return r.data, r.err
}

// readBounded is readBounded through the cache: a file already read whole
// (or within a larger limit) is not read again, nor one already found
// larger than a limit at least as large.
func (c *cachedFS) readBounded(name string, limit int64) ([]byte, error) {
	c.mu.Lock()
	r, ok := c.files[name]
	c.mu.Unlock()
	if ok {
		if r.err == nil {
			if int64(len(r.data)) > limit {
				return nil, &errTooLarge{name: name, size: int64(len(r.data)), limit: limit}
			}
			return r.data, nil
		}
		e, big := tooLarge(r.err)
		if !big {
			return nil, r.err
		}
		if limit <= e.limit { // e.size is exact or 0, and above limit either way
			return nil, &errTooLarge{name: name, size: e.size, limit: limit}
		}
	}
	r.data, r.err = readLimited(c.fsys, name, limit)
	c.mu.Lock()
	c.files[name] = r
	c.mu.Unlock()
	return r.data, r.err
}
