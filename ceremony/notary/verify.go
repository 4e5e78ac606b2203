package notary

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

const maxFile = 10 << 20 // a generous bound on any metadata file

// Pin is the root certificate the officer pins: the certificate itself,
// or Notary's certificate id (the root key id in root.json, what
// trust_pinning's "certs" section lists). A root must be signed by a
// threshold of pinned certificates, as Notary requires.
type Pin struct {
	Certs   []*x509.Certificate
	CertIDs []string
}

// Options say what to read.
type Options struct {
	GUN    string
	Source Source
	Pin    Pin
	// At is the reference time for expiry; zero means now.
	At time.Time
}

// Collection is a verified Notary collection.
type Collection struct {
	GUN         string   `json:"gun"`
	Source      string   `json:"source"`
	RootVersion int      `json:"root_version"`
	RootCertIDs []string `json:"root_cert_ids"` // the current root's certificate ids
	// PinnedCertIDs are the ids of the pinned certificates found in root
	// ChainFrom, where the verified chain starts.
	PinnedCertIDs []string `json:"pinned_cert_ids"`
	ChainFrom     int      `json:"chain_from"`
	Roles         []*Role  `json:"roles"` // targets, then delegations in Notary's walk order
	// Skipped are delegations a Notary client never loads: the snapshot
	// lists no checksum for them.
	Skipped []string `json:"skipped,omitempty"`
}

// Role is one targets role of the collection.
type Role struct {
	Name      string            `json:"name"` // "targets", "targets/releases"
	Version   int               `json:"version"`
	Expires   time.Time         `json:"expires"`
	Threshold int               `json:"threshold"`
	KeyIDs    []string          `json:"keyids"`
	Paths     []string          `json:"paths,omitempty"` // path prefixes, restricted by the parent ("" is every path)
	Targets   map[string]Target `json:"targets"`
}

// Target is a target as Notary signed it.
type Target struct {
	Length int64             `json:"length"`
	Hashes map[string][]byte `json:"hashes"`
	Custom json.RawMessage   `json:"custom,omitempty"`
}

// Error is a collection that does not verify: which role and what failed.
type Error struct {
	GUN, Role, Detail, HintText string
}

func (e *Error) Error() string {
	return fmt.Sprintf("the Notary collection %s does not verify: %s: %s", e.GUN, e.Role, e.Detail)
}

// Hint says what to do.
func (e *Error) Hint() string {
	if e.HintText != "" {
		return e.HintText
	}
	return "nothing was imported; a Notary client would refuse this collection too — fix it with the notary client, or import from a copy that verifies"
}

type reader struct {
	opts Options
	at   time.Time
	ctx  context.Context
}

func (r *reader) fail(role, format string, a ...any) error {
	return &Error{GUN: r.opts.GUN, Role: role, Detail: fmt.Sprintf(format, a...)}
}

// Read fetches the collection from opts.Source and verifies it by Notary's
// rules; nothing is returned unless every check passes.
func Read(ctx context.Context, opts Options) (*Collection, error) {
	if err := CheckGUN(opts.GUN); err != nil {
		return nil, err
	}
	if len(opts.Pin.Certs)+len(opts.Pin.CertIDs) == 0 {
		return nil, errors.New("no root certificate pinned")
	}
	r := &reader{opts: opts, at: opts.At, ctx: ctx}
	if r.at.IsZero() {
		r.at = time.Now()
	}
	c := &Collection{GUN: opts.GUN, Source: opts.Source.String()}
	rootRaw, rt, err := r.rootChain(c)
	if err != nil {
		return nil, err
	}
	sn, err := r.timestampSnapshot(rt)
	if err != nil {
		return nil, err
	}
	if err := checkHashes(rootRaw, sn.Meta[RoleRoot]); err != nil {
		return nil, r.fail(RoleRoot, "root.json does not match the snapshot: %v", err)
	}
	if err := r.targets(c, rt, sn); err != nil {
		return nil, err
	}
	return c, nil
}

// fetch reads a role's file, checks it against the hashes that name it
// and parses its envelope.
func (r *reader) fetch(role string, meta *fileMeta) ([]byte, *envelope, error) {
	var sum []byte
	max := int64(maxFile)
	if meta != nil {
		sum = meta.Hashes["sha256"]
		if meta.Length > 0 {
			max = meta.Length
		}
	}
	raw, err := r.opts.Source.Fetch(r.ctx, role, 0, sum, max)
	if err != nil {
		return nil, nil, &Error{GUN: r.opts.GUN, Role: role, Detail: "cannot read it: " + err.Error(),
			HintText: "check --server or --trust-dir and --gun (a trust directory holds tuf/GUN/metadata/)"}
	}
	if meta != nil {
		if err := checkHashes(raw, *meta); err != nil {
			return nil, nil, r.fail(role, "%v", err)
		}
	}
	e, err := parseEnvelope(role, raw)
	if err != nil {
		return nil, nil, r.fail(role, "%v", err)
	}
	return raw, e, nil
}

func (r *reader) checkExpiry(role string, c common) error {
	if r.at.After(c.Expires) {
		return r.fail(role, "expired at %s", c.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// baseRole is root.BuildBaseRole: the keys and threshold root gives role.
func baseRole(rt *root, role string) (map[string]*key, int) {
	rk := rt.Roles[role]
	keys := map[string]*key{}
	for _, id := range rk.KeyIDs {
		keys[id] = rt.Keys[id]
	}
	return keys, rk.Threshold
}

// timestampSnapshot verifies timestamp and the snapshot it names.
func (r *reader) timestampSnapshot(rt *root) (*snapshot, error) {
	_, te, err := r.fetch(RoleTimestamp, nil)
	if err != nil {
		return nil, err
	}
	keys, th := baseRole(rt, RoleTimestamp)
	if err := verifySignatures(te, keys, th); err != nil {
		return nil, r.fail(RoleTimestamp, "%v", err)
	}
	ts, err := parseSnapshot(RoleTimestamp, te.Signed)
	if err != nil {
		return nil, r.fail(RoleTimestamp, "%v", err)
	}
	if err := r.checkExpiry(RoleTimestamp, ts.common); err != nil {
		return nil, err
	}
	meta := ts.Meta[RoleSnapshot]
	_, se, err := r.fetch(RoleSnapshot, &meta)
	if err != nil {
		return nil, err
	}
	keys, th = baseRole(rt, RoleSnapshot)
	if err := verifySignatures(se, keys, th); err != nil {
		return nil, r.fail(RoleSnapshot, "%v", err)
	}
	sn, err := parseSnapshot(RoleSnapshot, se.Signed)
	if err != nil {
		return nil, r.fail(RoleSnapshot, "%v", err)
	}
	return sn, r.checkExpiry(RoleSnapshot, sn.common)
}

// targets verifies the targets role and walks its delegations as
// Notary's client does (breadth first, each child's paths restricted to
// its parent's).
func (r *reader) targets(c *Collection, rt *root, sn *snapshot) error {
	keys, th := baseRole(rt, RoleTargets)
	type todo struct {
		name      string
		keys      map[string]*key
		threshold int
		keyIDs    []string
		paths     []string
	}
	queue := []todo{{RoleTargets, keys, th, rt.Roles[RoleTargets].KeyIDs, nil}}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		meta, listed := sn.Meta[d.name]
		if !listed || (len(meta.Hashes) == 0 && meta.Length == 0) {
			c.Skipped = append(c.Skipped, d.name)
			continue
		}
		t, err := r.loadTargets(d.name, &meta, d.keys, d.threshold)
		if err != nil {
			return err
		}
		role := &Role{Name: d.name, Version: t.Version, Expires: t.Expires, Threshold: d.threshold, KeyIDs: d.keyIDs, Paths: d.paths, Targets: map[string]Target{}}
		for name, fm := range t.Targets {
			if d.name != RoleTargets && !slices.ContainsFunc(d.paths, func(p string) bool { return strings.HasPrefix(name, p) }) {
				return r.fail(d.name, "lists target %q outside its paths %q: Notary clients ignore it", name, d.paths)
			}
			role.Targets[name] = Target{Length: fm.Length, Hashes: fm.Hashes, Custom: fm.Custom}
		}
		c.Roles = append(c.Roles, role)
		for _, child := range t.Delegations.Roles {
			ckeys := map[string]*key{}
			for _, id := range child.KeyIDs {
				ckeys[id] = t.Delegations.Keys[id]
			}
			queue = append(queue, todo{child.Name, ckeys, child.Threshold, child.KeyIDs, restrict(d.name, d.paths, child.Paths)})
		}
	}
	return nil
}

func (r *reader) loadTargets(name string, meta *fileMeta, keys map[string]*key, threshold int) (*targets, error) {
	_, e, err := r.fetch(name, meta)
	if err != nil {
		return nil, err
	}
	t, err := parseTargets(name, e.Signed)
	if err != nil {
		return nil, r.fail(name, "%v", err)
	}
	if err := verifySignatures(e, keys, threshold); err != nil {
		return nil, r.fail(name, "%v", err)
	}
	return t, r.checkExpiry(name, t.common)
}

// restrict is RestrictDelegationPathPrefixes: the child's paths that lie
// under one of the parent's (top-level targets allows every path).
func restrict(parent string, parentPaths, paths []string) []string {
	if parent == RoleTargets {
		parentPaths = []string{""}
	}
	out := []string{}
	for _, p := range paths {
		if slices.ContainsFunc(parentPaths, func(pp string) bool { return strings.HasPrefix(p, pp) }) {
			out = append(out, p)
		}
	}
	return out
}

// checkHashes is data.CheckHashes: every listed sha256/sha512 matches, at
// least one is listed; and the length, when given.
func checkHashes(payload []byte, meta fileMeta) error {
	n := 0
	for _, alg := range slices.Sorted(maps.Keys(meta.Hashes)) {
		want := meta.Hashes[alg]
		var got []byte
		switch alg {
		case "sha256":
			s := sha256.Sum256(payload)
			got = s[:]
		case "sha512":
			s := sha512.Sum512(payload)
			got = s[:]
		default:
			continue
		}
		if subtle.ConstantTimeCompare(got, want) == 0 {
			return fmt.Errorf("its %s checksum is not the one the parent metadata lists", alg)
		}
		n++
	}
	if n == 0 {
		return errors.New("no sha256 or sha512 checksum is listed for it")
	}
	if meta.Length > 0 && int64(len(payload)) != meta.Length {
		return fmt.Errorf("it has %d bytes, %d listed", len(payload), meta.Length)
	}
	return nil
}
