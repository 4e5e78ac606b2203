package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

const day = 24 * time.Hour

// In-memory keys, for the format's own checks; the real path (SoftHSM,
// virtual YubiKeys) is what the golden scripts and e2e tests run.
func newSigner(t *testing.T) *roles.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := roles.NewSigner(crypto.Signer(k))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type fixture struct {
	fsys  fstest.MapFS
	root  []*roles.Signer // 2 of 3
	added *roles.Signer
	other *roles.Signer
}

// newFixture makes a published repository (root 2 of 3) and a bundle
// that rotates one root key out and a new one in (root v2, 2 of 3 of
// each root).
func newFixture(t *testing.T) (*fixture, *Bundle) {
	f := &fixture{root: []*roles.Signer{newSigner(t), newSigner(t), newSigner(t)}, added: newSigner(t), other: newSigner(t)}
	online := newSigner(t)
	now := time.Now()
	var rootKeys []*metadata.Key
	for _, s := range f.root {
		rootKeys = append(rootKeys, s.Key())
	}
	one := roles.RoleKeys{Keys: []*metadata.Key{online.Key()}, Threshold: 1}
	r, err := roles.New(roles.Bootstrap{Root: roles.RoleKeys{Keys: rootKeys, Threshold: 2}, Targets: one, Snapshot: one, Timestamp: one,
		Expires:            map[string]time.Time{"root": now.Add(365 * day), "targets": now.Add(90 * day), "snapshot": now.Add(30 * day), "timestamp": now.Add(day)},
		ConsistentSnapshot: true})
	must(t, err)
	for _, s := range f.root {
		must(t, roles.Sign(r.Root(), s))
	}
	must(t, roles.Sign(r.Targets, online))
	must(t, roles.Sign(r.Snapshot, online))
	must(t, roles.Sign(r.Timestamp, online))
	files, err := r.Files()
	must(t, err)
	f.fsys = fstest.MapFS{}
	for _, file := range files {
		f.fsys[file.Path] = &fstest.MapFile{Data: file.Data}
	}
	must(t, r.BumpRole("root", now.Add(300*day)))
	must(t, r.SetRoleKeys("root", roles.RoleKeys{Keys: []*metadata.Key{f.root[0].Key(), f.root[1].Key(), f.added.Key()}, Threshold: 2}))
	b, err := Build(f.fsys, Input{Name: "example.org/app", Operation: "rotate", Inputs: map[string]any{"role": "root"}, Now: now,
		Roles: []NewRole{{Role: "root", Signed: r.Root().Signed, Version: 2}},
		Keys:  map[string]*Key{f.added.KeyID(): {URI: "pkcs11:token=root-d;object=root", Device: "SoftHSM serial 42"}}})
	must(t, err)
	return f, b
}

func sign(t *testing.T, c *Checked, s *roles.Signer) {
	t.Helper()
	crs := c.Wants(s.KeyID())
	if len(crs) == 0 {
		t.Fatalf("no role wants %s", s.KeyID())
	}
	for _, cr := range crs {
		sig, err := s.SignMessage(strings.NewReader(string(cr.Payload)))
		must(t, err)
		must(t, c.AddSignature(cr, s.KeyID(), sig))
	}
}

func roundTrip(t *testing.T, b *Bundle) *Checked {
	t.Helper()
	data, err := b.Marshal()
	must(t, err)
	b2, err := Parse("b.json", data)
	must(t, err)
	c, err := Check("b.json", b2)
	must(t, err)
	return c
}

func TestBuildCheckSign(t *testing.T) {
	f, b := newFixture(t)
	if b.Repository.FirstRoot != sha256hex(f.fsys["metadata/1.root.json"].Data) {
		t.Error("identity is not the sha256 of 1.root.json")
	}
	if b.PlannedOn["metadata/timestamp.json"] == "" || b.PlannedOn["metadata/1.root.json"] == "" {
		t.Errorf("planned_on: %v", b.PlannedOn)
	}
	if !b.Expires.After(time.Now().Add(6*day)) || b.Expires.After(time.Now().Add(7*day)) {
		t.Errorf("default expiry %s", b.Expires)
	}
	c := roundTrip(t, b)
	if len(c.Roles) != 1 || len(c.Roles[0].Reqs) != 2 || c.Roles[0].Reqs[0].From != "root v2" || c.Roles[0].Reqs[1].From != "root v1" {
		t.Fatalf("requirements: %+v", c.Roles[0].Reqs)
	}
	s := c.Summarize(time.Now())
	text := s.Text(time.Now())
	for _, want := range []string{"key added   " + f.added.KeyID()[:12], "key removed " + f.root[2].KeyID()[:12], "SoftHSM serial 42",
		"signatures of root v2's keys: 0 of 2 needed, still needed", "Not every threshold is met yet."} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
	if err := c.WrongKey(f.other.KeyID(), "pkcs11:token=x;object=y"); !strings.Contains(err.Error(), f.added.KeyID()[:12]+" (SoftHSM serial 42)") {
		t.Errorf("wrong key error: %v", err)
	}
	if len(c.Wants(f.other.KeyID())) != 0 {
		t.Error("an unrelated key is wanted")
	}
	sign(t, c, f.root[0])
	sign(t, c, f.root[2]) // the old root's threshold only
	c = roundTrip(t, c.Bundle)
	if c.Complete() {
		t.Fatal("complete with 1 of root v2's keys")
	}
	if m := c.Summarize(time.Now()).Missing(); len(m) != 1 || !strings.Contains(m[0], "root v2 needs 1 more signature by root v2's keys") {
		t.Errorf("missing: %v", m)
	}
	sign(t, c, f.added)
	c = roundTrip(t, c.Bundle)
	if !c.Complete() {
		t.Fatalf("not complete: %v", c.Summarize(time.Now()).Missing())
	}
}

func TestStrictParse(t *testing.T) {
	_, b := newFixture(t)
	data, err := b.Marshal()
	must(t, err)
	for name, tc := range map[string]struct{ data, want string }{
		"version":  {strings.Replace(string(data), `"rootkeeper_bundle": 1`, `"rootkeeper_bundle": 2`, 1), "bundle format version 2; this rootkeeper reads version 1"},
		"unknown":  {strings.Replace(string(data), `"operation":`, `"caption": "trust me", "operation":`, 1), `unknown field "caption"`},
		"not":      {`{"roles": []}`, "not a rootkeeper signing bundle"},
		"trailing": {string(data) + "{}", "has data after the bundle"},
	} {
		_, err := Parse("b.json", []byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestRefusals(t *testing.T) {
	f, b := newFixture(t)
	c := roundTrip(t, b)
	sign(t, c, f.root[0])
	good, err := c.Bundle.Marshal()
	must(t, err)
	reparse := func() *Bundle {
		b, err := Parse("b.json", good)
		must(t, err)
		return b
	}

	// A payload byte changed: its hash no longer matches.
	b1 := reparse()
	b1.Roles[0].Payload = []byte(strings.Replace(string(b1.Roles[0].Payload), `"consistent_snapshot":true`, `"consistent_snapshot":false`, 1))
	var pe *PayloadError
	if _, err := Check("b.json", b1); !errors.As(err, &pe) {
		t.Errorf("changed payload: %v", err)
	}
	// ... and its hash changed too: the signature made over the original fails.
	b1.Roles[0].PayloadSHA256 = sha256hex(b1.Roles[0].Payload)
	var se *SignatureError
	if _, err := Check("b.json", b1); !errors.As(err, &se) || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("changed payload and hash: %v", err)
	}

	// A signature by a key the role does not trust.
	b2 := reparse()
	sig, err := f.other.SignMessage(strings.NewReader(string(b2.Roles[0].Payload)))
	must(t, err)
	b2.Roles[0].Signatures = append(b2.Roles[0].Signatures, Signature{KeyID: f.other.KeyID(), Sig: hex.EncodeToString(sig)})
	if _, err := Check("b.json", b2); !errors.As(err, &se) || !strings.Contains(err.Error(), "does not trust") {
		t.Errorf("untrusted signature: %v", err)
	}

	// One key twice counts once.
	b3 := reparse()
	b3.Roles[0].Signatures = append(b3.Roles[0].Signatures, b3.Roles[0].Signatures[0])
	c3, err := Check("b.json", b3)
	must(t, err)
	if c3.Roles[0].Reqs[0].Have != 1 || c3.Roles[0].Reqs[1].Have != 1 {
		t.Errorf("a key counted twice: %+v", c3.Roles[0].Reqs)
	}

	// Previous metadata swapped for other bytes.
	b4 := reparse()
	b4.Previous[0].Data = append(b4.Previous[0].Data, ' ')
	if _, err := Check("b.json", b4); err == nil || !strings.Contains(err.Error(), "not the file of the state it was planned on") {
		t.Errorf("previous changed: %v", err)
	}

	// A threshold that lies.
	b5 := reparse()
	b5.Roles[0].Thresholds[0].Threshold = 1
	if _, err := Check("b.json", b5); err == nil || !strings.Contains(err.Error(), "is not what the metadata says") {
		t.Errorf("threshold changed: %v", err)
	}

	// Expired.
	if err := reparse().Expired("b.json", time.Now().Add(8*day)); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("expired: %v", err)
	}
}

func TestMerge(t *testing.T) {
	f, b := newFixture(t)
	data, err := b.Marshal()
	must(t, err)
	var copies []*Checked
	for _, s := range []*roles.Signer{f.root[0], f.added, f.root[1], f.root[0]} {
		bc, err := Parse("copy", data)
		must(t, err)
		c, err := Check("copy", bc)
		must(t, err)
		sign(t, c, s)
		copies = append(copies, c)
	}
	m, err := Merge(copies[:1])
	must(t, err)
	if m.Complete() {
		t.Error("one copy complete")
	}
	m, err = Merge(copies)
	must(t, err)
	if !m.Complete() || len(m.Bundle.Roles[0].Signatures) != 3 {
		t.Errorf("merged: complete %t, %d signatures", m.Complete(), len(m.Bundle.Roles[0].Signatures))
	}
	_, other := newFixture(t)
	oc, err := Check("other", other)
	must(t, err)
	if _, err := Merge([]*Checked{copies[0], oc}); err == nil || !strings.Contains(err.Error(), "not a copy of") {
		t.Errorf("merge of two bundles: %v", err)
	}
}

func TestPayloadIsCanonicalSigned(t *testing.T) {
	_, b := newFixture(t)
	var want metadata.RootType
	c := roundTrip(t, b)
	rt := c.Roles[0].Signed.(*metadata.RootType)
	want = *rt
	enc, err := cjson.EncodeCanonical(want)
	must(t, err)
	if string(enc) != string(b.Roles[0].Payload) {
		t.Error("payload is not the canonical JSON of the signed root")
	}
	data, _ := b.Marshal()
	if !strings.Contains(string(data), base64.StdEncoding.EncodeToString(b.Roles[0].Payload)[:40]) {
		t.Error("payload not stored as base64")
	}
}

// A bootstrap bundle: no previous metadata, its identity the hash of its
// root v1's payload, root v1 signed by its own threshold; each part of
// that checked on read.
func TestBootstrapBundle(t *testing.T) {
	keys := []*roles.Signer{newSigner(t), newSigner(t), newSigner(t)}
	online := newSigner(t)
	now := time.Now()
	var rootKeys []*metadata.Key
	for _, s := range keys {
		rootKeys = append(rootKeys, s.Key())
	}
	one := roles.RoleKeys{Keys: []*metadata.Key{online.Key()}, Threshold: 1}
	r, err := roles.New(roles.Bootstrap{Root: roles.RoleKeys{Keys: rootKeys, Threshold: 2}, Targets: one, Snapshot: one, Timestamp: one,
		Expires: map[string]time.Time{"root": now.Add(365 * day), "targets": now.Add(90 * day), "snapshot": now.Add(30 * day), "timestamp": now.Add(day)}})
	must(t, err)
	must(t, roles.Sign(r.Targets, online))
	b, err := Build(nil, Input{Operation: "init", Now: now, Roles: []NewRole{
		{Role: "root", Signed: r.Root().Signed, Version: 1},
		{Role: "targets", Signed: r.Targets.Signed, Version: 1, Signatures: r.Targets.Signatures}}})
	must(t, err)
	if !b.Repository.Bootstrap || len(b.Previous) != 0 || b.Repository.FirstRoot != b.Roles[0].PayloadSHA256 {
		t.Fatalf("bootstrap bundle: %+v", b.Repository)
	}
	c, err := Check("b", b)
	must(t, err)
	if c.Complete() || c.Roles[0].Reqs[0].Threshold != 2 || len(c.Roles[0].Reqs) != 1 || !c.Roles[1].Complete() {
		t.Fatalf("root v1 needs its own 2 of 3 only, targets is signed: %+v %+v", c.Roles[0].Reqs, c.Roles[1].Reqs)
	}
	for _, s := range keys[:2] {
		sig, err := s.SignPayload(c.Roles[0].Payload)
		must(t, err)
		must(t, c.AddSignature(c.Roles[0], s.KeyID(), sig))
	}
	if !c.Complete() {
		t.Fatal("two of root v1's keys did not complete it")
	}
	data, err := b.Marshal()
	must(t, err)
	for name, edit := range map[string]func(b *Bundle){
		"is not the repository it makes": func(b *Bundle) { b.Repository.FirstRoot = strings.Repeat("0", 64) },
		"but carries previous metadata":  func(b *Bundle) { b.PlannedOn = map[string]string{"metadata/1.root.json": strings.Repeat("0", 64)} },
		"but carries no root v1":         func(b *Bundle) { b.Roles = b.Roles[1:] },
		"is targets v1, not targets v2":  func(b *Bundle) { b.Roles[1].Version = 2 },
	} {
		cp, err := Parse("b", data)
		must(t, err)
		edit(cp)
		if _, err := Check("b", cp); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// The custodian part's digest is the same when the bundle is made (its
// details may hold structs, whose members encode in declaration order)
// and when it is read back from the file (generic objects, members in
// sorted order): revoke's details hold its Revocation.
func TestCustodianDigestReadBack(t *testing.T) {
	type detail struct {
		Zeta  string `json:"zeta"`
		Alpha int    `json:"alpha"`
	}
	made := &Custodian{Changed: []string{"team"}, Remove: []string{"keys/x.json"},
		Details: map[string]any{"revocation": detail{Zeta: "z", Alpha: 3}, "reason": "stolen"}}
	data, err := json.Marshal(made)
	if err != nil {
		t.Fatal(err)
	}
	var read Custodian
	if err := json.Unmarshal(data, &read); err != nil {
		t.Fatal(err)
	}
	if made.Digest() != read.Digest() {
		t.Fatalf("the digest of the custodian part changes when it is read back: %s, %s", made.Digest(), read.Digest())
	}
	if made.LegacyDigest() == read.LegacyDigest() {
		t.Fatal("the legacy digest was expected to differ here (struct member order): the test no longer shows the problem")
	}
	read.Details["reason"] = "other"
	if made.Digest() == read.Digest() {
		t.Fatal("a changed detail gives the same digest")
	}
}
