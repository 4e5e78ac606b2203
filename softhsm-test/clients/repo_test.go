package clients

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Key kinds used by the tests. The first four are what rootkeeper may write;
// the others document client (in)compatibilities.
const (
	kindEd25519      = "ed25519"              // keytype ed25519, scheme ed25519, hex public key
	kindP256         = "ecdsa-p256"           // keytype "ecdsa", scheme ecdsa-sha2-nistp256, PEM
	kindP256Spec     = "ecdsa-sha2-nistp256"  // keytype = scheme = ecdsa-sha2-nistp256 (go-tuf's KeyFromPublicKey)
	kindP384         = "ecdsa-p384"           // keytype "ecdsa", scheme ecdsa-sha2-nistp384, SHA-384 signature
	kindRSA          = "rsa"                  // keytype rsa, scheme rsassa-pss-sha256, salt = hash length
	kindP384Spec     = "ecdsa-sha2-nistp384"  // keytype = scheme = ecdsa-sha2-nistp384, SHA-384 signature
	kindP384AsP256   = "p384-labelled-p256"   // P-384 key, keytype "ecdsa", scheme nistp256, SHA-256 signature
	kindP256WrongSig = "p256-bad-signature"   // P-256 key whose signatures are over other bytes
	rsaBits          = 2048                   // RSA key size for the tests
	testExpiry       = 365 * 24 * time.Hour   // default metadata lifetime
	delegatedRole    = "deleg"                // name of the delegated targets role
	delegatedPattern = "deleg/*"              // path pattern of the delegated role
	delegatedTarget  = "deleg/delegated.txt"  // a target signed by the delegated role
	topTarget        = "hello.txt"            // a top-level target
	nestedTarget     = "dir/sub/nested.txt"   // a top-level target in a sub-directory
	defaultContent   = "hello, rootkeeper\n"  // content of topTarget
	nestedContent    = "nested target bytes"  // content of nestedTarget
	delegatedContent = "delegated target ..." // content of delegatedTarget
)

// testKey is an in-memory software key (test only) with its TUF public key.
type testKey struct {
	pub  *metadata.Key
	id   string
	sign func(payload []byte) ([]byte, error)
}

// rsaKey caches one RSA key per test binary: generating it is the slow part.
var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, rsaBits) })

func pemPublic(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// newKey makes a fresh key of the given kind, except that kindRSA always
// returns the same key pair (generation is slow): tests that need two
// different keys use another kind.
func newKey(t testing.TB, kind string) *testKey {
	t.Helper()
	k := &testKey{pub: &metadata.Key{}}
	ecKey := func(c elliptic.Curve, keytype, scheme string, h crypto.Hash) {
		priv, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.pub.Type, k.pub.Scheme = keytype, scheme
		k.pub.Value.PublicKey = pemPublic(t, &priv.PublicKey)
		k.sign = func(p []byte) ([]byte, error) {
			hh := h.New()
			hh.Write(p)
			return ecdsa.SignASN1(rand.Reader, priv, hh.Sum(nil))
		}
	}
	switch kind {
	case kindEd25519:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.pub.Type, k.pub.Scheme = metadata.KeyTypeEd25519, metadata.KeySchemeEd25519
		k.pub.Value.PublicKey = hex.EncodeToString(pub)
		k.sign = func(p []byte) ([]byte, error) { return ed25519.Sign(priv, p), nil }
	case kindP256:
		ecKey(elliptic.P256(), "ecdsa", "ecdsa-sha2-nistp256", crypto.SHA256)
	case kindP256Spec:
		ecKey(elliptic.P256(), "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256", crypto.SHA256)
	case kindP384:
		ecKey(elliptic.P384(), "ecdsa", "ecdsa-sha2-nistp384", crypto.SHA384)
	case kindP384Spec:
		ecKey(elliptic.P384(), "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384", crypto.SHA384)
	case kindP384AsP256:
		ecKey(elliptic.P384(), "ecdsa", "ecdsa-sha2-nistp256", crypto.SHA256)
	case kindP256WrongSig:
		ecKey(elliptic.P256(), "ecdsa", "ecdsa-sha2-nistp256", crypto.SHA256)
		good := k.sign
		k.sign = func(p []byte) ([]byte, error) { return good(append([]byte("x"), p...)) }
	case kindRSA:
		priv, err := rsaKey()
		if err != nil {
			t.Fatal(err)
		}
		k.pub.Type, k.pub.Scheme = "rsa", "rsassa-pss-sha256"
		k.pub.Value.PublicKey = pemPublic(t, &priv.PublicKey)
		k.sign = func(p []byte) ([]byte, error) {
			d := sha256.Sum256(p)
			return rsa.SignPSS(rand.Reader, priv, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	// Key id: SHA-256 of the canonical JSON of the public key, computed on
	// the key exactly as written (go-tuf's Key.ID does that).
	id, err := k.pub.ID()
	if err != nil {
		t.Fatal(err)
	}
	k.id = id
	return k
}

// signMetadata replaces md's signatures by signatures of keys over the
// canonical JSON of md.Signed.
func signMetadata[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], keys ...*testKey) {
	t.Helper()
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		t.Fatal(err)
	}
	md.ClearSignatures()
	for _, k := range keys {
		sig, err := k.sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		md.Signatures = append(md.Signatures, metadata.Signature{KeyID: k.id, Signature: sig})
	}
}

// testRepo is a TUF repository written to dir by the tests (software keys).
type testRepo struct {
	t          testing.TB
	dir        string
	consistent bool
	root       *metadata.Metadata[metadata.RootType]
	targets    *metadata.Metadata[metadata.TargetsType]
	deleg      *metadata.Metadata[metadata.TargetsType] // nil without delegation
	snapshot   *metadata.Metadata[metadata.SnapshotType]
	timestamp  *metadata.Metadata[metadata.TimestampType]
	keys       map[string]*testKey // role → its (single) signing key
	files      map[string][]byte   // target path → content
	extra      []*extraRole        // more delegated roles (addRole)
}

// extraRole is a delegated targets role added with addRole.
type extraRole struct {
	name string
	md   *metadata.Metadata[metadata.TargetsType]
	key  *testKey
}

type repoOpts struct {
	kind       string // key kind of every role
	consistent bool
	delegate   bool // add the delegated role "deleg" with delegatedTarget
}

// newTestRepo builds and writes a complete repository: root v1, targets with
// topTarget and nestedTarget, optionally a delegation, snapshot, timestamp.
func newTestRepo(t testing.TB, o repoOpts) *testRepo {
	t.Helper()
	expires := time.Now().UTC().Add(testExpiry).Truncate(time.Second)
	r := &testRepo{
		t: t, dir: t.TempDir(), consistent: o.consistent,
		root: metadata.Root(expires), targets: metadata.Targets(expires),
		snapshot: metadata.Snapshot(expires), timestamp: metadata.Timestamp(expires),
		keys:  map[string]*testKey{},
		files: map[string][]byte{topTarget: []byte(defaultContent), nestedTarget: []byte(nestedContent)},
	}
	r.root.Signed.ConsistentSnapshot = o.consistent
	for _, role := range []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		k := newKey(t, o.kind)
		r.keys[role] = k
		if err := r.root.Signed.AddKey(k.pub, role); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{topTarget, nestedTarget} {
		r.addTarget(r.targets, p)
	}
	if o.delegate {
		k := newKey(t, o.kind)
		r.keys[delegatedRole] = k
		r.targets.Signed.Delegations = &metadata.Delegations{
			Keys:  map[string]*metadata.Key{k.id: k.pub},
			Roles: []metadata.DelegatedRole{{Name: delegatedRole, KeyIDs: []string{k.id}, Threshold: 1, Paths: []string{delegatedPattern}}},
		}
		r.deleg = metadata.Targets(expires)
		r.files[delegatedTarget] = []byte(delegatedContent)
		r.addTarget(r.deleg, delegatedTarget)
	}
	r.writeRoot(r.keys[metadata.ROOT])
	r.writeTargetFiles()
	r.publish()
	return r
}

// addTarget records r.files[p] in md, with sha256 and sha512 hashes.
func (r *testRepo) addTarget(md *metadata.Metadata[metadata.TargetsType], p string) {
	tf, err := metadata.TargetFile().FromBytes(p, r.files[p], "sha256", "sha512")
	if err != nil {
		r.t.Fatal(err)
	}
	md.Signed.Targets[p] = tf
}

// targetPaths returns where p is stored in DIR/targets: p itself, or with
// consistent snapshots one <hash>.<base> file per hash algorithm.
func (r *testRepo) targetPaths(p string) []string {
	if !r.consistent {
		return []string{p}
	}
	data := r.files[p]
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	dir, base := path.Split(p)
	return []string{dir + hex.EncodeToString(s256[:]) + "." + base, dir + hex.EncodeToString(s512[:]) + "." + base}
}

// writeTargetFiles writes every target file to DIR/targets.
func (r *testRepo) writeTargetFiles() {
	for p, data := range r.files {
		for _, rel := range r.targetPaths(p) {
			r.writeFile(filepath.Join("targets", filepath.FromSlash(rel)), data)
		}
	}
}

func (r *testRepo) writeFile(rel string, data []byte) {
	full := filepath.Join(r.dir, rel)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// metaName is the file name of role's metadata at version v.
func (r *testRepo) metaName(role string, v int64) string {
	if r.consistent {
		return strconv.FormatInt(v, 10) + "." + role + ".json"
	}
	return role + ".json"
}

func toBytes[T metadata.Roles](t testing.TB, md *metadata.Metadata[T]) []byte {
	t.Helper()
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeRoot signs the current root with signers and writes N.root.json.
func (r *testRepo) writeRoot(signers ...*testKey) []byte {
	signMetadata(r.t, r.root, signers...)
	b := toBytes(r.t, r.root)
	r.writeFile(filepath.Join("metadata", strconv.FormatInt(r.root.Signed.Version, 10)+".root.json"), b)
	return b
}

// rootBytes returns DIR/metadata/<v>.root.json.
func (r *testRepo) rootBytes(v int64) []byte {
	b, err := os.ReadFile(filepath.Join(r.dir, "metadata", strconv.FormatInt(v, 10)+".root.json"))
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// addRole makes parent (targets or another delegated role) delegate paths
// to a new role name with its own Ed25519 key, and lists each of targets
// in it (with content "<name>:<path>"). It returns the role.
func (r *testRepo) addRole(parent *metadata.Metadata[metadata.TargetsType], name string, paths []string, targets ...string) *extraRole {
	k := newKey(r.t, kindEd25519)
	if parent.Signed.Delegations == nil {
		parent.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	dl := parent.Signed.Delegations
	dl.Keys[k.id] = k.pub
	dl.Roles = append(dl.Roles, metadata.DelegatedRole{Name: name, KeyIDs: []string{k.id}, Threshold: 1, Paths: paths})
	e := &extraRole{name: name, md: metadata.Targets(r.targets.Signed.Expires), key: k}
	for _, p := range targets {
		r.files[p] = []byte(name + ":" + p)
		r.addTarget(e.md, p)
	}
	r.extra = append(r.extra, e)
	return e
}

// publish signs and writes the delegated role, targets, snapshot and
// timestamp at their current versions; snapshot and timestamp describe the
// others. Role names are escaped in file names as rootkeeper and go-tuf
// escape them (url.PathEscape).
func (r *testRepo) publish() {
	for _, e := range r.extra {
		signMetadata(r.t, e.md, e.key)
		r.writeFile(filepath.Join("metadata", url.PathEscape(r.metaName(e.name, e.md.Signed.Version))), toBytes(r.t, e.md))
		r.snapshot.Signed.Meta[e.name+".json"] = metadata.MetaFile(e.md.Signed.Version)
	}
	if r.deleg != nil {
		signMetadata(r.t, r.deleg, r.keys[delegatedRole])
		r.writeFile(filepath.Join("metadata", r.metaName(delegatedRole, r.deleg.Signed.Version)), toBytes(r.t, r.deleg))
		r.snapshot.Signed.Meta[delegatedRole+".json"] = metadata.MetaFile(r.deleg.Signed.Version)
	}
	signMetadata(r.t, r.targets, r.keys[metadata.TARGETS])
	r.writeFile(filepath.Join("metadata", r.metaName(metadata.TARGETS, r.targets.Signed.Version)), toBytes(r.t, r.targets))
	r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.targets.Signed.Version)

	signMetadata(r.t, r.snapshot, r.keys[metadata.SNAPSHOT])
	snap := toBytes(r.t, r.snapshot)
	r.writeFile(filepath.Join("metadata", r.metaName(metadata.SNAPSHOT, r.snapshot.Signed.Version)), snap)
	sum := sha256.Sum256(snap)
	r.timestamp.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{
		Version: r.snapshot.Signed.Version, Length: int64(len(snap)), Hashes: metadata.Hashes{"sha256": sum[:]},
	}
	r.writeTimestamp()
}

// writeTimestamp signs and writes timestamp.json as it is now.
func (r *testRepo) writeTimestamp() []byte {
	signMetadata(r.t, r.timestamp, r.keys[metadata.TIMESTAMP])
	b := toBytes(r.t, r.timestamp)
	r.writeFile(filepath.Join("metadata", "timestamp.json"), b)
	return b
}

// bumpAll increments targets, snapshot and timestamp versions and publishes.
func (r *testRepo) bumpAll() {
	r.targets.Signed.Version++
	r.snapshot.Signed.Version++
	r.timestamp.Signed.Version++
	r.publish()
}
