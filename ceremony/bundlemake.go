package ceremony

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony/bundle"
	"github.com/rootkeeper/rootkeeper/roles"
)

// BundleOut makes a change command write a signing bundle instead of
// committing (--out FILE, --bundle-expires).
type BundleOut struct {
	Path     string
	Lifetime time.Duration // 0: bundle.DefaultLifetime
}

// BundleResult says what --out wrote.
type BundleResult struct {
	File     string   `json:"file"`
	ID       string   `json:"id"`
	Expires  string   `json:"expires"`
	Roles    []string `json:"roles"`
	SignedBy []string `json:"signed_by"` // key ids that signed here
	Complete bool     `json:"complete"`
	Missing  []string `json:"missing,omitempty"`
}

// makeBundle is the end of a change with --out: the keys plugged in here
// sign what they can of the roles that are not made from other roles'
// signatures (snapshot and timestamp are made at apply, with the online
// keys), and the change goes into a signing bundle instead of the
// repository; the transcript records the bundle (its payload hashes,
// which apply checks) and nothing else is written.
func (s *Session) makeBundle(ctx context.Context, c *Change) (*Result, error) {
	if c.Summary.Text != "" {
		if err := s.confirm(c.Summary.Text + "\n\nThe change goes into the signing bundle " + s.Bundle.Path + "; keys plugged in here sign now."); err != nil {
			return nil, err
		}
	}
	signing := *c
	signing.Steps, signing.Partial = nil, true
	for _, st := range c.Steps {
		if st.Follow == nil && st.Role != RoleSnapshot && st.Role != RoleTimestamp { // those are made at apply
			signing.Steps = append(signing.Steps, st)
		}
	}
	tally, err := s.Sign(ctx, &signing, s.Local())
	if err != nil {
		return nil, err
	}
	in, err := s.bundleInput(c, signing.Steps)
	if err != nil {
		return nil, err
	}
	fsys := os.DirFS(c.Dir)
	if c.Op == OpInit {
		fsys = nil // a bootstrap bundle: no published metadata yet
	}
	b, err := bundle.Build(fsys, in)
	if err != nil {
		return nil, err
	}
	if b.Custodian, err = custodianOf(c); err != nil {
		return nil, err
	}
	for _, rt := range tally.Roles {
		for _, id := range rt.Signed {
			dev := ""
			if k, ok := b.Keys[id]; ok {
				dev = k.Device
			}
			b.Log = append(b.Log, logEntry(bundle.EventSigned, c.At, id, dev, []string{rt.Role}))
		}
	}
	if err := recordBundle(c, b); err != nil {
		return nil, err
	}
	if err := writeBundle(b, s.Bundle.Path); err != nil {
		return nil, err
	}
	res, err := bundleResult(s.Bundle.Path, b)
	if res != nil {
		res.Dir = c.Dir
	}
	return res, err
}

// bundleInput is what the bundle carries of the change: each role of the
// signing steps with the signatures made here, and each key's location.
func (s *Session) bundleInput(c *Change, steps []*Step) (bundle.Input, error) {
	in := bundle.Input{Name: c.Policy.Repository, Operation: c.Op, Inputs: c.Details, Now: c.At, Lifetime: s.Bundle.Lifetime,
		Keys: map[string]*bundle.Key{}, Made: logEntry(bundle.EventMade, c.At, "", "", nil)}
	for _, st := range steps {
		for _, name := range st.Names() {
			signed, version, err := signedOf(c.Repo, name)
			if err != nil {
				return in, err
			}
			in.Roles = append(in.Roles, bundle.NewRole{Role: name, Signed: signed, Version: version, Signatures: c.Repo.Signatures(name)})
		}
		for _, n := range st.Needs {
			for id, where := range n.Where {
				k := &bundle.Key{URI: where.URI, Device: where.Device}
				if rec := c.Records[id]; rec != nil {
					k.Evidence, k.Algorithm = rec.Evidence, rec.Algorithm
				}
				in.Keys[id] = k
			}
		}
	}
	for _, f := range c.Extra { // keys added by the change: their new records
		if rec, ok := parseRecord(f); ok {
			in.Keys[rec.KeyID] = &bundle.Key{URI: rec.URI, Algorithm: rec.Algorithm, Evidence: rec.Evidence, Device: deviceOf(rec)}
		}
	}
	return in, nil
}

// signedOf returns the signed part of a role's new version and its version.
func signedOf(repo *roles.Repo, role string) (any, int64, error) {
	switch role {
	case RoleRoot:
		return repo.Root().Signed, repo.Root().Signed.Version, nil
	case RoleSnapshot:
		return repo.Snapshot.Signed, repo.Snapshot.Signed.Version, nil
	case RoleTimestamp:
		return repo.Timestamp.Signed, repo.Timestamp.Signed.Version, nil
	}
	md, err := repo.TargetsRole(role)
	if err != nil {
		return nil, 0, err
	}
	return md.Signed, md.Signed.Version, nil
}

// custodianOf is the rest of the change, for apply.
func custodianOf(c *Change) (*bundle.Custodian, error) {
	cu := &bundle.Custodian{Changed: c.Changed, Remove: c.Remove, Details: c.Details}
	for _, f := range c.Extra {
		cu.Files = append(cu.Files, bundle.File{Path: f.Path, Data: f.Data})
	}
	if !c.NoPolicy {
		pol, err := c.Policy.Marshal()
		if err != nil {
			return nil, err
		}
		cu.Policy = pol
	}
	return cu, nil
}

// writeBundle writes the bundle to path through the store's one atomic
// write (store.go: a fsynced temporary file beside it, renamed into place).
func writeBundle(b *bundle.Bundle, path string) error {
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	return writeAtomic(path, data)
}

// recordBundle writes the transcript entry of a bundle made: its id,
// operation, expiry, the SHA-256 of each payload and of the custodian
// part, and the signatures made here. It is the only write of --out.
func recordBundle(c *Change, b *bundle.Bundle) error {
	payloads := map[string]string{}
	for _, r := range b.Roles {
		payloads[r.Role] = r.PayloadSHA256
	}
	details := map[string]any{"bundle": b.ID, "bundle_operation": b.Operation, "bundle_expires": b.Expires.UTC().Format(time.RFC3339),
		"payloads": payloads, "custodian_sha256": b.Custodian.Digest(), "signatures": signedLog(b.Log)}
	entry, err := appendTranscript(c.Dir, c.At, OpBundle, details, nil)
	if err != nil {
		return err
	}
	_, err = commitFiles(c.Dir, &changeset{op: OpBundle, at: c.At, files: []File{entry}})
	return err
}

// Transcript operations of signing bundles, and of the bootstrap.
const (
	OpBundle = "bundle"
	OpInit   = "init"
)

// signedLog is the transcript's record of a bundle's signatures: key id,
// device, time.
func signedLog(log []bundle.LogEntry) []map[string]any {
	out := []map[string]any{}
	for _, e := range log {
		if e.Event != bundle.EventSigned {
			continue
		}
		out = append(out, map[string]any{"keyid": e.KeyID, "device": e.Device, "roles": e.Roles, "time": e.Time.UTC().Format(time.RFC3339), "host": e.Host})
	}
	return out
}

func bundleResult(path string, b *bundle.Bundle) (*Result, error) {
	c, err := bundle.Check(path, b)
	if err != nil {
		return nil, err
	}
	sum := c.Summarize(time.Now())
	br := &BundleResult{File: path, ID: b.ID, Expires: b.Expires.UTC().Format(time.RFC3339), Complete: c.Complete(), Missing: sum.Missing(), SignedBy: []string{}}
	for _, r := range b.Roles {
		br.Roles = append(br.Roles, r.Role)
		for _, s := range r.Signatures {
			br.SignedBy = appendNew(br.SignedBy, s.KeyID)
		}
	}
	return &Result{Operation: b.Operation, Bundle: br, Versions: map[string]int64{}, Expires: map[string]string{}}, nil
}

func appendNew(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}

func parseRecord(f File) (*KeyRecord, bool) {
	if len(f.Path) < 5 || f.Path[:5] != "keys/" {
		return nil, false
	}
	var rec KeyRecord
	if json.Unmarshal(f.Data, &rec) != nil || rec.KeyID == "" {
		return nil, false
	}
	return &rec, true
}
