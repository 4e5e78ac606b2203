package bundle

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// DefaultLifetime is how long a bundle may collect signatures unless
// the custodian says otherwise (--bundle-expires).
const DefaultLifetime = 7 * 24 * time.Hour

// Input is a planned change to carry in a bundle.
type Input struct {
	Name      string // the repository's name for people
	Operation string
	Inputs    map[string]any
	Now       time.Time
	// Lifetime is how long the bundle collects signatures; it never
	// outlives the earliest expiry of the metadata it carries.
	Lifetime time.Duration
	Roles    []NewRole // in signing order
	// Keys describes keys the thresholds name (device, evidence, URI);
	// keys not described get their public key only.
	Keys map[string]*Key
	// Made is the "made" log entry (operator, host, version).
	Made LogEntry
}

// NewRole is one role's new version, with the signatures already made
// (by the custodian's local keys).
type NewRole struct {
	Role       string
	Signed     any // metadata.RootType, TargetsType, SnapshotType, TimestampType (or pointers)
	Version    int64
	Signatures []metadata.Signature
}

// Build makes a bundle of in against the published repository in fsys
// (the repository directory), and checks it as Check would. A nil fsys
// makes a bootstrap bundle (init --out): a new repository, whose identity
// is the SHA-256 of the payload of the root v1 in in.Roles.
func Build(fsys fs.FS, in Input) (*Bundle, error) {
	b := &Bundle{Format: Format, ID: newID(), Repository: Repository{Name: in.Name},
		Operation: in.Operation, Inputs: in.Inputs, CreatedAt: in.Now.UTC().Truncate(time.Second), PlannedOn: map[string]string{}, Keys: map[string]*Key{}}
	consistent, err := b.published(fsys, in.Roles)
	if err != nil {
		return nil, err
	}
	for _, nr := range in.Roles {
		if nr.Role == metadata.ROOT {
			if rt, ok := asRoot(nr.Signed); ok {
				consistent = rt.ConsistentSnapshot
			}
		}
	}
	if err := b.addRoles(in.Roles, consistent); err != nil {
		return nil, err
	}
	earliest := in.Now.Add(lifetime(in.Lifetime))
	c, err := check("", b, true)
	if err != nil {
		return nil, err
	}
	for _, cr := range c.Roles {
		if cr.Expires.Before(earliest) {
			earliest = cr.Expires
		}
		for _, q := range cr.Reqs {
			for _, id := range q.KeyIDs {
				b.Keys[id] = describe(in.Keys[id], cr.Keys[id])
			}
		}
		for id, k := range in.Keys { // other keys the payloads name (a new root's online keys)
			if tuf := cr.Keys[id]; tuf != nil && b.Keys[id] == nil {
				b.Keys[id] = describe(k, tuf)
			}
		}
	}
	b.Expires = earliest.UTC().Truncate(time.Second)
	made := in.Made
	made.Time, made.Event = b.CreatedAt, EventMade
	b.Log = []LogEntry{made}
	if _, err := Check("", b); err != nil {
		return nil, err
	}
	return b, nil
}

// published records the repository's identity and the previous metadata
// from fsys, or marks a bootstrap bundle (nil fsys); it reports whether
// the repository uses consistent snapshots.
func (b *Bundle) published(fsys fs.FS, changed []NewRole) (bool, error) {
	if fsys == nil {
		b.Repository.Bootstrap, b.Previous = true, []File{}
		return false, nil
	}
	pub, err := roles.Load(fsys)
	if err != nil {
		return false, fmt.Errorf("cannot load the published metadata: %w", err)
	}
	files, err := pub.Files()
	if err != nil {
		return false, err
	}
	data := map[string][]byte{}
	for _, f := range files {
		data[f.Path] = f.Data
	}
	b.Repository.FirstRoot = sha256hex(data[roles.MetadataPath(metadata.ROOT, 1, false)])
	b.previous(pub, data, changed)
	return pub.Root().Signed.ConsistentSnapshot, nil
}

// addRoles adds the new versions with their payloads and the signatures
// made so far; a bootstrap bundle's identity is its root's payload.
func (b *Bundle) addRoles(rs []NewRole, consistent bool) error {
	for _, nr := range rs {
		payload, err := cjson.EncodeCanonical(nr.Signed)
		if err != nil {
			return fmt.Errorf("%s: %w", nr.Role, err)
		}
		r := Role{Role: nr.Role, Version: nr.Version, Path: roles.MetadataPath(nr.Role, nr.Version, consistent), Payload: payload, PayloadSHA256: sha256hex(payload)}
		for _, s := range nr.Signatures {
			r.Signatures = append(r.Signatures, Signature{KeyID: s.KeyID, Sig: hex.EncodeToString(s.Signature)})
		}
		if b.Repository.Bootstrap && nr.Role == metadata.ROOT {
			b.Repository.FirstRoot = r.PayloadSHA256
		}
		b.Roles = append(b.Roles, r)
	}
	return nil
}

func lifetime(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultLifetime
	}
	return d
}

func asRoot(v any) (*metadata.RootType, bool) {
	switch r := v.(type) {
	case metadata.RootType:
		return &r, true
	case *metadata.RootType:
		return r, true
	}
	return nil, false
}

func describe(k *Key, tuf *metadata.Key) *Key {
	out := &Key{}
	if k != nil {
		c := *k
		out = &c
	}
	out.Key = tuf
	return out
}

// previous records the published files the bundle is checked against,
// and the state it was planned on: every root, the timestamp and
// snapshot, the published version of each targets role in the change and
// of every role on the way from targets to it.
func (b *Bundle) previous(pub *roles.Repo, data map[string][]byte, changed []NewRole) {
	cs := pub.Root().Signed.ConsistentSnapshot
	for v := int64(1); v <= pub.Root().Signed.Version; v++ {
		p := roles.MetadataPath(metadata.ROOT, v, false)
		b.Previous = append(b.Previous, File{Role: metadata.ROOT, Path: p, Data: data[p]})
	}
	var want []string
	add := func(role string) {
		if !slices.Contains(want, role) {
			want = append(want, role)
		}
	}
	for _, nr := range changed {
		switch nr.Role {
		case metadata.ROOT, metadata.SNAPSHOT, metadata.TIMESTAMP:
			continue
		}
		for role, hops := nr.Role, 0; role != "" && hops < 64; hops++ {
			add(role)
			if role == metadata.TARGETS {
				break
			}
			d := pub.DelegatorOf(role)
			if d == "" { // a new role: its delegator is in the change
				d = delegatorInChange(changed, role)
			}
			role = d
		}
	}
	for _, role := range want {
		md := pub.Targets
		if role != metadata.TARGETS {
			md = pub.Delegated[role]
		}
		if md == nil {
			continue // new in this change
		}
		p := roles.MetadataPath(role, md.Signed.Version, cs)
		b.Previous = append(b.Previous, File{Role: role, Path: p, Data: data[p]})
	}
	for _, f := range b.Previous {
		b.PlannedOn[f.Path] = sha256hex(f.Data)
	}
	for _, p := range []string{roles.MetadataPath(metadata.TIMESTAMP, 0, cs), roles.MetadataPath(metadata.SNAPSHOT, pub.Snapshot.Signed.Version, cs)} {
		if d, ok := data[p]; ok {
			b.PlannedOn[p] = sha256hex(d)
		}
	}
}

// delegatorInChange finds the new targets version in the change that
// delegates to role.
func delegatorInChange(changed []NewRole, role string) string {
	for _, nr := range changed {
		var t *metadata.TargetsType
		switch v := nr.Signed.(type) {
		case metadata.TargetsType:
			t = &v
		case *metadata.TargetsType:
			t = v
		}
		if t == nil || t.Delegations == nil {
			continue
		}
		for _, r := range t.Delegations.Roles {
			if r.Name == role {
				return nr.Role
			}
		}
		if t.Delegations.SuccinctRoles != nil && t.Delegations.SuccinctRoles.IsDelegatedRole(role) {
			return nr.Role
		}
	}
	return ""
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
