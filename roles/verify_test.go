package roles

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestVerifyReportsStatus(t *testing.T) {
	tr := newTestRepo(t, true)
	rep := verifyOK(t, fsOf(t, tr.Repo, testTargets), VerifyOptions{CheckTargets: true})
	var names []string
	for _, r := range rep.Roles {
		names = append(names, r.Role)
		if r.ValidSignatures < r.Threshold {
			t.Errorf("%s: %d valid signatures, threshold %d", r.Role, r.ValidSignatures, r.Threshold)
		}
	}
	if got := strings.Join(names, ","); got != "root,timestamp,snapshot,targets,releases" {
		t.Fatalf("roles %s", got)
	}
	if rep.Roles[0].ValidSignatures != 2 || rep.Roles[4].Delegator != "targets" {
		t.Fatalf("status %+v", rep.Roles)
	}
}

func TestVerifyTampered(t *testing.T) {
	tr := newTestRepo(t, false)
	fsys := fsOf(t, tr.Repo, nil)
	data := fsys["metadata/targets.json"].Data
	fsys["metadata/targets.json"].Data = bytes.Replace(data, []byte(`"length": 5`), []byte(`"length": 6`), 1)
	rep, err := Verify(fsys, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleThreshold, "targets: signed by 0 of 1 required keys of root v1")
	if rep.Roles[3].Role != "targets" || rep.Roles[3].Err == "" {
		t.Fatalf("targets status %+v", rep.Roles[3])
	}
}

func TestVerifyExpired(t *testing.T) {
	tr := newTestRepo(t, true)
	fsys := fsOf(t, tr.Repo, nil)
	at := time.Now().Add(2 * day)
	rep, err := Verify(fsys, VerifyOptions{At: at})
	must(t, err)
	wantProblem(t, rep, RuleExpired, "timestamp: expired at ")
	if findProblem(rep, RuleExpired, "snapshot") != nil {
		t.Fatal("snapshot reported expired")
	}
	// Roles behind the expired timestamp were still checked.
	if rep.Roles[3].Role != "targets" || rep.Roles[3].ValidSignatures != 1 || rep.Roles[3].Err != "" {
		t.Fatalf("targets status %+v", rep.Roles[3])
	}
	rep, err = Verify(fsys, VerifyOptions{At: time.Now().Add(400 * day)})
	must(t, err)
	wantProblem(t, rep, RuleExpired, "root v1: expired at ")
}

func TestVerifyMargins(t *testing.T) {
	tr := newTestRepo(t, true)
	fsys := fsOf(t, tr.Repo, nil)
	rep, err := Verify(fsys, VerifyOptions{Margins: map[string]time.Duration{"timestamp": 2 * day, "*": time.Hour}})
	must(t, err)
	wantProblem(t, rep, RuleMargin, "timestamp: expires in less than 2d")
	if len(rep.Problems) != 1 {
		t.Fatalf("problems %v", rep.Problems)
	}
	verifyOK(t, fsys, VerifyOptions{Margins: map[string]time.Duration{"timestamp": time.Hour}})
}

func TestVerifyRootBelowThreshold(t *testing.T) {
	tr := newTestRepo(t, false)
	tr.Root().Signatures = tr.Root().Signatures[:1]
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleThreshold, "root v1: signed by 1 of 2 required keys of root v1")
}

// TestVerifyRootChain: root v2 rotates the root keys and must be signed by
// a threshold of both the old and the new keys.
func TestVerifyRootChain(t *testing.T) {
	for _, tc := range []struct {
		name, rule, want string
		old, new         bool
	}{
		{"both", "", "", true, true},
		{"only new keys", RuleRootChain, "root v2: signed by 0 of 2 required keys of root v1", false, true},
		{"only old keys", RuleThreshold, "root v2: signed by 0 of 1 required keys of root v2", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRepo(t, true)
			fresh := newSigner(t, "p384")
			must(t, tr.BumpRole("root", time.Now().Add(365*day)))
			must(t, tr.SetRoleKeys("root", RoleKeys{Keys: []*metadata.Key{fresh.Key()}, Threshold: 1}))
			if tc.old {
				for _, s := range tr.root {
					must(t, Sign(tr.Root(), s))
				}
			}
			if tc.new {
				must(t, Sign(tr.Root(), fresh))
			}
			fsys := fsOf(t, tr.Repo, nil)
			if tc.rule == "" {
				verifyOK(t, fsys, VerifyOptions{})
				return
			}
			rep, err := Verify(fsys, VerifyOptions{})
			must(t, err)
			wantProblem(t, rep, tc.rule, tc.want)
			if rep.Roles[1].Role != "root" || rep.Roles[1].Version != 2 || !strings.Contains(rep.Roles[1].Err, tc.want) {
				t.Fatalf("root v2 status %+v", rep.Roles[1])
			}
			if tc.new {
				// A client that already trusts root v2 is fine.
				verifyOK(t, fsys, VerifyOptions{TrustedRoot: fsys["metadata/2.root.json"].Data})
			}
		})
	}
}

// TestVerifyKeyIDMismatch lists a key under a wrong id: go-tuf accepts it,
// strict clients do not.
func TestVerifyKeyIDMismatch(t *testing.T) {
	tr := newTestRepo(t, false)
	must(t, tr.BumpRole("targets", time.Now().Add(90*day)))
	dl := tr.Targets.Signed.Delegations
	realID := tr.releases.KeyID()
	fake := strings.Repeat("ab", 32)
	dl.Keys[fake] = dl.Keys[realID]
	delete(dl.Keys, realID)
	dl.Roles[0].KeyIDs = []string{fake}
	// The releases role must now carry the signature under the fake id.
	must(t, tr.BumpRole("releases", time.Now().Add(90*day)))
	must(t, Sign(tr.Delegated["releases"], tr.releases))
	tr.Delegated["releases"].Signatures[0].KeyID = fake
	tr.signAll(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleKeyID, fmt.Sprintf("targets: key id %s does not match its key (recomputed %s)", short(fake), short(realID)))
	for _, p := range rep.Problems {
		if p.Rule != RuleKeyID {
			t.Errorf("unexpected problem %s [%s]", p, p.Rule)
		}
	}
}

func TestVerifyTargetFiles(t *testing.T) {
	for _, consistent := range []bool{false, true} {
		tr := newTestRepo(t, consistent)
		fsys := fsOf(t, tr.Repo, testTargets)
		verifyOK(t, fsys, VerifyOptions{CheckTargets: true})
		for name, f := range fsys {
			if strings.HasSuffix(name, "app-1.0.tar.gz") {
				f.Data = []byte("app 1.1")
			}
		}
		rep, err := Verify(fsys, VerifyOptions{CheckTargets: true})
		must(t, err)
		wantProblem(t, rep, RuleTargetFile, `releases: target "releases/app-1.0.tar.gz"`)
		verifyOK(t, fsys, VerifyOptions{}) // not checked unless asked
		for name := range fsys {
			if strings.HasSuffix(name, "readme.txt") {
				delete(fsys, name)
			}
		}
		rep, err = Verify(fsys, VerifyOptions{CheckTargets: true})
		must(t, err)
		wantProblem(t, rep, RuleTargetFile, "is missing")
	}
}

// TestVerifyRawECDSA: go-tuf accepts raw r||s ECDSA signatures; python-tuf
// and tuf-js do not, so Verify reports them.
func TestVerifyRawECDSA(t *testing.T) {
	tr := newTestRepo(t, true)
	sig := tr.Timestamp.Signatures[0].Signature
	tr.Timestamp.Signatures[0].Signature = rawRS(32)(sig)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleSigEncoding, "raw r||s")
	wantProblem(t, rep, RuleThreshold, "timestamp: signed by 0 of 1")
}

func TestVerifySnapshotMismatch(t *testing.T) {
	tr := newTestRepo(t, true)
	// Re-sign the snapshot after the timestamp recorded its hash.
	must(t, tr.BumpRole("snapshot", time.Now().Add(10*day)))
	must(t, Sign(tr.Snapshot, tr.snapshot))
	tr.Timestamp.Signed.Meta["snapshot.json"].Version = tr.Snapshot.Signed.Version
	tr.Timestamp.Signatures = nil
	must(t, Sign(tr.Timestamp, tr.timestamp))
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleLengthHash, "does not match the length/hashes recorded in timestamp")
}

func TestVerifyMissingRootVersion(t *testing.T) {
	tr := newTestRepo(t, true)
	for range 2 {
		must(t, tr.BumpRole("root", time.Now().Add(365*day)))
		for _, s := range tr.root {
			must(t, Sign(tr.Root(), s))
		}
	}
	fsys := fsOf(t, tr.Repo, nil)
	verifyOK(t, fsys, VerifyOptions{})
	delete(fsys, "metadata/2.root.json")
	rep, err := Verify(fsys, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleMissing, "metadata/2.root.json is missing but metadata/3.root.json exists")
	_, err = Load(fsys)
	mustErr(t, err, "metadata/2.root.json is missing")
}

func TestVerifyNotARepository(t *testing.T) {
	rep, err := Verify(fstest.MapFS{}, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleMissing, "not a TUF repository")
	_, err = Load(fstest.MapFS{})
	mustErr(t, err, "metadata/1.root.json is missing")
}

// TestGoTUFRepository builds a repository with go-tuf's own API, with a
// nested delegation and hashed bins, and checks that Load and Verify take it.
func TestGoTUFRepository(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "metadata"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "targets"), 0o755))
	exp := time.Now().Add(30 * day).UTC().Truncate(time.Second)

	type keyed struct {
		key    *metadata.Key
		signer signature.Signer
	}
	mk := func(kind string) keyed {
		priv := newKey(t, kind)
		k, err := metadata.KeyFromPublicKey(priv.Public())
		must(t, err)
		var s signature.Signer
		switch p := priv.(type) {
		case *ecdsa.PrivateKey:
			s, err = signature.LoadECDSASigner(p, crypto.SHA256)
		case ed25519.PrivateKey:
			s, err = signature.LoadED25519Signer(p)
		}
		must(t, err)
		return keyed{k, s}
	}
	rootK, tsK, snK, tgK, delK := mk("ed25519"), mk("p256"), mk("ed25519"), mk("p256"), mk("ed25519")

	root := metadata.Root(exp)
	root.Signed.ConsistentSnapshot = true
	must(t, root.Signed.AddKey(rootK.key, "root"))
	must(t, root.Signed.AddKey(tsK.key, "timestamp"))
	must(t, root.Signed.AddKey(snK.key, "snapshot"))
	must(t, root.Signed.AddKey(tgK.key, "targets"))

	content := []byte("payload")
	tf, err := metadata.TargetFile().FromBytes("a/file.txt", content, "sha256", "sha512")
	must(t, err)
	targets := metadata.Targets(exp)
	targets.Signed.Delegations = &metadata.Delegations{
		Keys:  map[string]*metadata.Key{},
		Roles: []metadata.DelegatedRole{{Name: "team-a", Threshold: 1, Paths: []string{"a/*"}}},
	}
	must(t, targets.Signed.AddKey(delK.key, "team-a"))
	teamA := metadata.Targets(exp)
	teamA.Signed.Targets["a/file.txt"] = tf
	teamA.Signed.Delegations = &metadata.Delegations{
		Keys:          map[string]*metadata.Key{},
		SuccinctRoles: &metadata.SuccinctRoles{Threshold: 1, BitLength: 2, NamePrefix: "bin"},
	}
	must(t, teamA.Signed.AddKey(delK.key, ""))

	snapshot := metadata.Snapshot(exp)
	write := func(name string, md interface {
		ToFile(string, bool) error
	}) {
		must(t, md.ToFile(filepath.Join(dir, "metadata", name), true))
	}
	signAndWrite := func(name, role string, md *metadata.Metadata[metadata.TargetsType], k keyed) {
		_, err := md.Sign(k.signer)
		must(t, err)
		write(name, md)
		snapshot.Signed.Meta[role+".json"] = metadata.MetaFile(1)
	}
	for _, bin := range teamA.Signed.Delegations.SuccinctRoles.GetRoles() {
		signAndWrite("1."+bin+".json", bin, metadata.Targets(exp), delK)
	}
	signAndWrite("1.team-a.json", "team-a", teamA, delK)
	signAndWrite("1.targets.json", "targets", targets, tgK)
	_, err = snapshot.Sign(snK.signer)
	must(t, err)
	write("1.snapshot.json", snapshot)
	timestamp := metadata.Timestamp(exp)
	_, err = timestamp.Sign(tsK.signer)
	must(t, err)
	write("timestamp.json", timestamp)
	_, err = root.Sign(rootK.signer)
	must(t, err)
	write("1.root.json", root)
	must(t, os.MkdirAll(filepath.Join(dir, "targets", "a"), 0o755))
	for _, name := range TargetFilePaths("a/file.txt", tf, true) {
		must(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), content, 0o644))
	}

	fsys := os.DirFS(dir)
	rep, err := Verify(fsys, VerifyOptions{CheckTargets: true})
	must(t, err)
	if !rep.OK {
		t.Fatalf("go-tuf repository rejected: %v", rep.Problems)
	}
	if len(rep.Roles) != 4+1+4 {
		t.Fatalf("%d roles verified, want 9 (root, timestamp, snapshot, targets, team-a, 4 bins)", len(rep.Roles))
	}
	r, err := Load(fsys)
	must(t, err)
	if len(r.Delegated) != 5 {
		t.Fatalf("loaded %d delegated roles, want 5", len(r.Delegated))
	}
	reqs, err := r.Needed("bin-2")
	must(t, err)
	if reqs[0].From != "team-a v1" || reqs[0].Have != 1 {
		t.Fatalf("bin-2 requirements %+v", reqs)
	}
	// Unchanged files keep their bytes, so a rewrite is a no-op.
	files, err := r.Files()
	must(t, err)
	for _, f := range files {
		disk, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		must(t, err)
		if !bytes.Equal(disk, f.Data) {
			t.Fatalf("%s would be rewritten", f.Path)
		}
	}
	// A bin with a tampered signature is caught.
	binFile := filepath.Join(dir, "metadata", "1.bin-1.json")
	data, err := os.ReadFile(binFile)
	must(t, err)
	must(t, os.WriteFile(binFile, bytes.Replace(data, []byte(`"version": 1`), []byte(`"version": 1, "x": 1`), 1), 0o644))
	rep, err = Verify(fsys, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleThreshold, "bin-1: signed by 0 of 1 required keys of team-a")
}

// TestVerifyMislabelledP384 lists a P-384 timestamp key the way go-tuf's
// KeyFromPublicKey writes it (scheme nistp256) and signs with go-tuf:
// go-tuf accepts the result, Verify does not.
func TestVerifyMislabelledP384(t *testing.T) {
	tr := newTestRepo(t, true)
	priv := newKey(t, "p384").(*ecdsa.PrivateKey)
	k, err := metadata.KeyFromPublicKey(priv.Public())
	must(t, err)
	mustErr(t, tr.SetRoleKeys("timestamp", RoleKeys{Keys: []*metadata.Key{k}, Threshold: 1}), "curve P-384")

	must(t, tr.BumpRole("root", time.Now().Add(365*day)))
	id, err := KeyID(k)
	must(t, err)
	tr.Root().Signed.Keys[id] = k
	tr.Root().Signed.Roles["timestamp"].KeyIDs = []string{id}
	for _, s := range tr.root {
		must(t, Sign(tr.Root(), s))
	}
	must(t, tr.UpdateTimestamp(time.Now().Add(day)))
	gs, err := signature.LoadECDSASigner(priv, crypto.SHA256)
	must(t, err)
	_, err = tr.Timestamp.Sign(gs)
	must(t, err)

	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleKeyType, `scheme "ecdsa-sha2-nistp256" but the key is on curve P-384`)
	for _, p := range rep.Problems {
		if p.Rule == RuleClient {
			t.Fatalf("go-tuf was expected to accept this: %s", p)
		}
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	tr := newTestRepo(t, false)
	fsys := fsOf(t, tr.Repo, nil)
	fsys["metadata/targets.json"].Data = fsys["metadata/targets.json"].Data[:50]
	_, err := Load(fsys)
	mustErr(t, err, "metadata/targets.json: not valid targets metadata")
	fsys = fsOf(t, tr.Repo, nil)
	delete(fsys, "metadata/releases.json")
	_, err = Load(fsys)
	mustErr(t, err, "metadata/releases.json is missing (snapshot v1 lists releases v1)")
}
