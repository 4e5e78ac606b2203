package roles

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
)

// The client rules Verify applies on top of go-tuf's trustedmetadata, one
// test per rule. softhsm-test/clients checks with go-tuf's updater and
// tuf-js that both clients refuse what these tests refuse.

// resign signs every unsigned targets role (delegated ones with the
// releases key, which every delegation of these tests trusts) and
// refreshes snapshot and timestamp.
func (tr *testRepo) resign(t testing.TB) {
	t.Helper()
	for _, md := range tr.Delegated {
		if len(md.Signatures) == 0 {
			must(t, Sign(md, tr.releases))
		}
	}
	tr.signAll(t)
}

// unsign drops the signatures of the roles given, so resign signs them
// again after a hand-made change.
func (tr *testRepo) unsign(t testing.TB, roles ...string) {
	t.Helper()
	for _, r := range roles {
		md, err := tr.targetsRole(r)
		must(t, err)
		md.Signatures = nil
	}
}

func TestClientLimitsAreGoTUFs(t *testing.T) {
	cfg, err := config.New("https://example.invalid/", []byte("{}"))
	must(t, err)
	if cfg.RootMaxLength != RootMaxLength || cfg.TimestampMaxLength != TimestampMaxLength || cfg.SnapshotMaxLength != SnapshotMaxLength ||
		cfg.TargetsMaxLength != TargetsMaxLength || cfg.MaxRootRotations != MaxRootRotations || cfg.MaxDelegations != MaxDelegations {
		t.Fatalf("go-tuf's defaults %+v differ from rootkeeper's limits", cfg)
	}
}

func TestVerifySizeLimits(t *testing.T) {
	tr := newTestRepo(t, true)
	pad := func(fsys fstest.MapFS, p string, n int) {
		// Whitespace after the document keeps every signature valid.
		fsys[p] = &fstest.MapFile{Data: append(bytes.Clone(fsys[p].Data), bytes.Repeat([]byte(" "), n)...)}
	}
	fsys := fsOf(t, tr.Repo, nil)
	pad(fsys, "metadata/timestamp.json", 20000)
	rep, err := Verify(fsys, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleSize, "metadata/timestamp.json is 2")
	wantProblem(t, rep, RuleSize, "more than the 16384 bytes go-tuf and tuf-js accept for timestamp metadata by default (timestampMaxLength)")

	fsys = fsOf(t, tr.Repo, nil)
	pad(fsys, "metadata/1.root.json", 600000)
	rep, err = Verify(fsys, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleSize, "metadata/1.root.json is 60")
	if len(rep.Problems) != 1 {
		t.Fatalf("problems %v", rep.Problems)
	}

	// The snapshot lists no length for targets: the 5,000,000-byte default.
	fsys = fsOf(t, tr.Repo, nil)
	pad(fsys, "metadata/1.targets.json", TargetsMaxLength)
	rep, err = Verify(fsys, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleSize, "metadata/1.targets.json is 500")
	wantProblem(t, rep, RuleSize, "(targetsMaxLength)")
	// Load still reads it (up to 16 times the limit), so that a change can
	// bring the role back under the limit; the preflight refuses any other.
	if _, err := Load(fsys); err != nil {
		t.Fatalf("Load: %v", err)
	}

	// The timestamp lists the snapshot's length: one byte more is refused.
	fsys = fsOf(t, tr.Repo, nil)
	pad(fsys, "metadata/1.snapshot.json", 1)
	rep, err = Verify(fsys, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleLengthHash, "metadata/1.snapshot.json is longer than the ")
	wantProblem(t, rep, RuleLengthHash, " bytes timestamp v1 lists for it")
}

// countingFS counts the bytes read from it; its file "big" never ends
// and does not say its size.
type countingFS struct {
	fstest.MapFS
	read *int64
}

type endless struct{ n *int64 }

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	*e.n += int64(len(p))
	return len(p), nil
}
func (endless) Close() error               { return nil }
func (endless) Stat() (fs.FileInfo, error) { return nil, fs.ErrInvalid }

func (c countingFS) Open(name string) (fs.File, error) {
	if name == "metadata/1.targets.json" {
		return endless{c.read}, nil
	}
	return c.MapFS.Open(name)
}

func TestVerifyReadsAtMostTheLimit(t *testing.T) {
	tr := newTestRepo(t, true)
	var n int64
	fsys := countingFS{MapFS: fsOf(t, tr.Repo, nil), read: &n}
	delete(fsys.MapFS, "metadata/1.targets.json")
	rep, err := Verify(fsys, VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleSize, "metadata/1.targets.json is over 5000000 bytes")
	if n > TargetsMaxLength+64<<10 {
		t.Fatalf("read %d bytes of a file with a limit of %d", n, TargetsMaxLength)
	}

	// 200 MB on disk (sparse) is refused by its size, without reading it.
	dir := t.TempDir()
	for p, f := range fsOf(t, tr.Repo, nil) {
		must(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, p), f.Data, 0o644))
	}
	must(t, os.Truncate(filepath.Join(dir, "metadata/1.targets.json"), 200<<20))
	start := time.Now()
	rep, err = Verify(os.DirFS(dir), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleSize, "metadata/1.targets.json is 209715200 bytes: more than the 5000000 bytes")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("verify took %s", d)
	}
	// Load refuses it too.
	_, err = Load(os.DirFS(dir))
	mustErr(t, err, "metadata/1.targets.json is 209715200 bytes")
}

func TestCheckRoleName(t *testing.T) {
	for _, ok := range []string{"releases", "team-a", "Team_B.2", "a", strings.Repeat("x", 100), "console", "comx", "constructors"} {
		if err := CheckRoleName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for name, want := range map[string]string{
		"":                       "empty",
		strings.Repeat("x", 101): "at most 100",
		"a/b":                    `"/" needs escaping in a URL`,
		"a%2Fb":                  `"%" needs escaping`,
		"a?b":                    `"?" needs escaping`,
		"r\u0435leases":          "U+0435, not ASCII",
		"re\u200bleases":         "U+200B, not ASCII",
		"\u200freleases":         "U+200F, not ASCII",
		"a b":                    `" " is not among the characters allowed`,
		"a\tb":                   "control character U+0009",
		"1.root":                 "must start with an ASCII letter",
		"-x":                     "must start with an ASCII letter",
		"Targets":                "top-level role name",
		"con":                    "device name on Windows",
		"NUL.x":                  "device name on Windows",
		"com1":                   "device name on Windows",
		"lpt9.a":                 "device name on Windows",
		"constructor":            "built-in JavaScript property",
		"toString":               "built-in JavaScript property",
	} {
		mustErr(t, CheckRoleName(name), want)
	}
}

// renameReleases renames the delegated role releases to name and signs
// everything again.
func renameReleases(t *testing.T, tr *testRepo, name string) fstest.MapFS {
	t.Helper()
	md := tr.Delegated["releases"]
	delete(tr.Delegated, "releases")
	tr.Delegated[name] = md
	tr.Targets.Signed.Delegations.Roles[0].Name = name
	tr.Snapshot.Signed.Meta[name+".json"] = tr.Snapshot.Signed.Meta["releases.json"]
	delete(tr.Snapshot.Signed.Meta, "releases.json")
	md.Signatures = nil
	tr.Targets.Signatures = nil
	tr.resign(t)
	return fsOf(t, tr.Repo, nil)
}

func TestVerifyRoleNames(t *testing.T) {
	for name, want := range map[string]string{
		"a/b":            `targets: delegates to "a/b": role name "a/b" is not allowed: "/" needs escaping`,
		"r\u0435leases":  "U+0435, not ASCII",
		"rel\u200beases": "U+200B, not ASCII",
		"\u200freleases": "U+200F, not ASCII",
		"constructor":    "built-in JavaScript property",
		"1.root":         "must start with an ASCII letter",
		"aux":            "device name on Windows",
	} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			tr := newTestRepo(t, true)
			rep, err := Verify(renameReleases(t, tr, name), VerifyOptions{})
			must(t, err)
			wantProblem(t, rep, RuleRoleName, want)
			if p := findProblem(rep, RuleRoleName, want); p.Role != "targets" || p.File != "metadata/1.targets.json" {
				t.Fatalf("problem %+v", p)
			}
		})
	}
}

func TestVerifyRoleNamesDifferingInCase(t *testing.T) {
	tr := newTestRepo(t, false)
	must(t, tr.BumpRole("targets", time.Now().Add(90*day)))
	must(t, tr.AddDelegation("targets", Delegation{Name: "team", Keys: []*metadata.Key{tr.releases.Key()}, Threshold: 1, Paths: []string{"team/*"}}, time.Now().Add(day)))
	// rootkeeper refuses a second name differing in case; make it by hand.
	tr.Targets.Signed.Delegations.Roles[1].Name = "Releases"
	tr.Delegated["Releases"] = tr.Delegated["team"]
	delete(tr.Delegated, "team")
	tr.resign(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleRoleName, `differ only in letter case: on a case-insensitive file system or web server (macOS, Windows) their files are one`)
}

func TestVerifyNumberRange(t *testing.T) {
	for _, tc := range []struct {
		version int64
		ok      bool
	}{{MaxSafeInteger, true}, {MaxSafeInteger + 1, false}, {1 << 62, false}} {
		tr := newTestRepo(t, true)
		tr.Targets.Signed.Version = tc.version
		tr.unsign(t, "targets")
		tr.resign(t)
		fsys := fsOf(t, tr.Repo, nil)
		if tc.ok {
			verifyOK(t, fsys, VerifyOptions{})
			// The next version is refused before anything is signed.
			mustErr(t, tr.BumpRole("targets", time.Now().Add(day)), "targets is at version 9007199254740991: the next version would be 2^53 or more")
			continue
		}
		rep, err := Verify(fsys, VerifyOptions{})
		must(t, err)
		// Both the targets file and the snapshot entry naming it.
		wantProblem(t, rep, RuleNumber, fmt.Sprintf("targets: signed.version is %d: integers from 2^53 (9007199254740992) on are beyond what tuf-js (JavaScript) reads exactly", tc.version))
		wantProblem(t, rep, RuleNumber, fmt.Sprintf(`snapshot: signed.meta["targets.json"].version is %d`, tc.version))
	}
}

func TestVerifyEncoding(t *testing.T) {
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		// go-tuf reads a missing consistent_snapshot as false and checks
		// the signature over its own encoding (which has it); tuf-js
		// refuses the file.
		{"no consistent_snapshot", "metadata/1.root.json", `"consistent_snapshot": false,`, ``,
			"root v1: signed.consistent_snapshot is not in the file, go-tuf adds false"},
		{"no terminating", "metadata/targets.json", `"terminating": false`, `"x-terminating": false`,
			`targets: signed.delegations.roles[0].terminating is not in the file, go-tuf adds false`},
		// Canonical JSON has no fractions.
		{"fraction", "metadata/releases.json", `"_type": "targets",`, `"_type": "targets", "x-custom": {"ratio": 1.5},`,
			`releases: signed["x-custom"].ratio is 1.5, not an integer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRepo(t, false)
			fsys := fsOf(t, tr.Repo, nil)
			data := fsys[tc.file].Data
			if !bytes.Contains(data, []byte(tc.old)) {
				t.Fatalf("%s has no %s", tc.file, tc.old)
			}
			fsys[tc.file] = &fstest.MapFile{Data: bytes.Replace(data, []byte(tc.old), []byte(tc.new), 1)}
			rep, err := Verify(fsys, VerifyOptions{})
			must(t, err)
			rule := RuleEncoding
			if tc.name == "fraction" {
				rule = RuleNumber
			}
			wantProblem(t, rep, rule, tc.want)
		})
	}
}

func TestVerifyKeyIDTwice(t *testing.T) {
	tr := newTestRepo(t, true)
	r := &tr.Targets.Signed.Delegations.Roles[0]
	r.KeyIDs = append(r.KeyIDs, r.KeyIDs[0])
	tr.unsign(t, "targets")
	tr.resign(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleKeyID, `targets, delegation "releases": lists key id `)
}

func TestVerifyTimestampMetaAndSpec(t *testing.T) {
	tr := newTestRepo(t, true)
	tr.Timestamp.Signed.Meta["targets.json"] = &metadata.MetaFiles{Version: 1}
	tr.Timestamp.Signatures = nil
	must(t, Sign(tr.Timestamp, tr.timestamp))
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleEncoding, "timestamp: meta lists 2 files (snapshot.json, targets.json): tuf-js keeps only snapshot.json")

	tr = newTestRepo(t, true)
	tr.Targets.Signed.SpecVersion = "1.0.31.1"
	tr.unsign(t, "targets")
	tr.resign(t)
	rep, err = Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleSpecVersion, `targets: spec_version "1.0.31.1" is not of the form 1.N or 1.N.N`)
}

func TestVerifyExpiresAtTheInstant(t *testing.T) {
	tr := newTestRepo(t, true)
	fsys := fsOf(t, tr.Repo, nil)
	at := tr.Timestamp.Signed.Expires
	verifyOK(t, fsys, VerifyOptions{At: at.Add(-time.Millisecond)})
	rep, err := Verify(fsys, VerifyOptions{At: at})
	must(t, err)
	// go-tuf still accepts it at that instant; tuf-js does not.
	wantProblem(t, rep, RuleExpired, "timestamp: expired at ")

	tr.Timestamp.Signed.Expires = at.Add(500 * time.Millisecond)
	tr.Timestamp.Signatures = nil
	must(t, Sign(tr.Timestamp, tr.timestamp))
	rep, err = Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleEncoding, "is not in the TUF form YYYY-MM-DDTHH:MM:SSZ")
}

func TestVerifyTargetRules(t *testing.T) {
	tr := newTestRepo(t, true)
	tf := tr.Targets.Signed.Targets["readme.txt"]
	tr.Targets.Signed.Targets["a?b.txt"] = tf
	tr.Targets.Signed.Targets["sums.txt"] = &metadata.TargetFiles{Length: tf.Length, Hashes: metadata.Hashes{"sha256": tf.Hashes["sha256"], "sha384": tf.Hashes["sha256"]}}
	rel := &tr.Targets.Signed.Delegations.Roles[0]
	rel.Paths = []string{"releases/{a,b}"}
	tr.Targets.Signed.Delegations.Roles = append(tr.Targets.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: "hashed", KeyIDs: rel.KeyIDs, Threshold: 1, PathHashPrefixes: []string{"ab"},
	})
	tr.Delegated["hashed"] = newTargets(time.Now().Add(day).UTC().Truncate(time.Second))
	tr.unsign(t, "targets")
	tr.resign(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleTargetPath, `targets: target path "a?b.txt" contains "?"`)
	wantProblem(t, rep, RuleTargetFile, `targets: target "sums.txt" lists a sha384 hash: go-tuf checks only sha256 and sha512`)
	wantProblem(t, rep, RuleTargetPath, `targets: delegation "releases": path pattern "releases/{a,b}" is not allowed: "{" means different things`)
	wantProblem(t, rep, RuleDelegation, `targets: delegation "hashed" uses path_hash_prefixes`)
}

func TestVerifyDotTargetsUnderWildcards(t *testing.T) {
	tr := newTestRepo(t, true)
	tr.Targets.Signed.Delegations.Roles[0].Paths = []string{"releases/*"}
	must(t, tr.BumpRole("releases", time.Now().Add(90*day)))
	must(t, tr.AddTarget("releases", "releases/.hidden", []byte("x")))
	tr.unsign(t, "targets")
	tr.resign(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleTargetPath, `releases: target "releases/.hidden": tuf-js clients do not find it here: minimatch's '*' and '?' never match a leading '.'`)
	if len(rep.Problems) != 1 {
		t.Fatalf("problems %v", rep.Problems)
	}
}

// chain delegates d1 from targets, d2 from d1, … dn, each for "x/*", and
// lists x/<name> in each.
func chain(t *testing.T, tr *testRepo, n int) {
	t.Helper()
	from := "targets"
	must(t, tr.BumpRole("targets", time.Now().Add(90*day)))
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("d%d", i)
		err := tr.AddDelegation(from, Delegation{Name: name, Keys: []*metadata.Key{tr.releases.Key()}, Threshold: 1, Paths: []string{"x/*"}}, time.Now().Add(day))
		if i > MaxDelegations {
			mustErr(t, err, fmt.Sprintf("a role delegated from d%d would be at depth %d: go-tuf and tuf-js clients visit at most 32 delegated roles", i-1, i))
			// Make it by hand, as another tool would.
			md := tr.Delegated[from]
			md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{tr.releases.KeyID(): tr.releases.Key()},
				Roles: []metadata.DelegatedRole{{Name: name, KeyIDs: []string{tr.releases.KeyID()}, Threshold: 1, Paths: []string{"x/*"}}}}
			tr.Delegated[name] = newTargets(time.Now().Add(day).UTC().Truncate(time.Second))
		} else {
			must(t, err)
		}
		must(t, tr.AddTarget(name, "x/"+name, []byte(name)))
		from = name
	}
}

func TestVerifyDelegationDepth(t *testing.T) {
	tr := newTestRepo(t, true)
	chain(t, tr, MaxDelegations+1)
	tr.resign(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleDepth, "d33 is delegated at depth 33 (targets → d1 → d2 → … → d32 → d33): clients visit at most 32 delegated roles for a target and never load it")
	if len(rep.Problems) != 1 {
		t.Fatalf("problems %v", rep.Problems)
	}
}

func TestVerifyDelegationSearchCut(t *testing.T) {
	// 33 siblings for "x/*": a target in the last one comes after 32 roles
	// that clients visit first.
	tr := newTestRepo(t, true)
	must(t, tr.BumpRole("targets", time.Now().Add(90*day)))
	for i := 1; i <= MaxDelegations+1; i++ {
		name := fmt.Sprintf("s%02d", i)
		must(t, tr.AddDelegation("targets", Delegation{Name: name, Keys: []*metadata.Key{tr.releases.Key()}, Threshold: 1, Paths: []string{"x/*"}}, time.Now().Add(day)))
		must(t, tr.AddTarget(name, "x/"+name, []byte(name)))
	}
	// releases comes first and is not for x/*: 33 roles visited for x/s33
	// are targets and s01…s32.
	tr.resign(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleDepth, `s33: target "x/s33": clients give up before they reach s33`)
	if len(rep.Problems) != 1 {
		t.Fatalf("problems %v", rep.Problems)
	}
}

func TestVerifyTerminatingEndsSearch(t *testing.T) {
	tr := newTestRepo(t, true)
	must(t, tr.BumpRole("targets", time.Now().Add(90*day)))
	tr.Targets.Signed.Delegations.Roles[0].Terminating = true
	must(t, tr.AddDelegation("targets", Delegation{Name: "late", Keys: []*metadata.Key{tr.releases.Key()}, Threshold: 1, Paths: []string{"releases/*"}}, time.Now().Add(day)))
	must(t, tr.AddTarget("late", "releases/late.tgz", []byte("late")))
	tr.resign(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleDelegation, `late: target "releases/late.tgz": no client reaches late for it`)
}

func TestVerifyRootRotations(t *testing.T) {
	if testing.Short() {
		t.Skip("257 root versions")
	}
	tr := newTestRepo(t, true)
	for i := 0; i < MaxRootRotations+1; i++ {
		must(t, tr.BumpRole("root", time.Now().Add(365*day)))
		if i == MaxRootRotations {
			// The newest root (v258) trusts a new timestamp key.
			tr.timestamp = newSigner(t, "p256")
			must(t, tr.SetRoleKeys("timestamp", RoleKeys{Keys: []*metadata.Key{tr.timestamp.Key()}, Threshold: 1}))
		}
		for _, s := range tr.root {
			must(t, Sign(tr.Root(), s))
		}
	}
	must(t, tr.BumpRole("timestamp", time.Now().Add(day)))
	tr.signAll(t)
	rep, err := Verify(fsOf(t, tr.Repo, nil), VerifyOptions{})
	must(t, err)
	wantProblem(t, rep, RuleRootChain, "a client holding root v1 fetches at most 256 newer roots in one update (go-tuf and tuf-js maxRootRotations): it stops at root v257 and then fails")
}
