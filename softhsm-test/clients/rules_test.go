package clients

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// The client rules of rootkeeper verify (roles/limits.go, names.go,
// clientrules.go, encoding.go, search.go), each confirmed here with
// go-tuf's updater and tuf-js over loopback HTTP: a properly signed
// repository breaking the rule is refused by both clients (or by the one
// the rule is about), and roles.Verify refuses it with the rule named.

// wantVerify runs roles.Verify on dir and fails unless it reports rule
// with detail containing want.
func wantVerify(t *testing.T, dir, rule, want string) {
	t.Helper()
	rep, err := roles.Verify(os.DirFS(dir), roles.VerifyOptions{CheckTargets: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		if p.Rule == rule && strings.Contains(p.Detail, want) {
			return
		}
	}
	for _, p := range rep.Problems {
		t.Logf("problem: %s [%s %s]", p, p.Rule, p.File)
	}
	t.Fatalf("roles.Verify: no %s problem containing %q", rule, want)
}

// verifyOK fails unless roles.Verify finds dir clean.
func verifyOK(t *testing.T, dir string) {
	t.Helper()
	rep, err := roles.Verify(os.DirFS(dir), roles.VerifyOptions{CheckTargets: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("roles.Verify: %s [%s %s]", p, p.Rule, p.File)
	}
}

// pad appends n spaces to a metadata file: its signatures stay valid.
func (r *testRepo) pad(name string, n int) {
	p := filepath.Join(r.dir, "metadata", name)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Repeat(" ", n)); err != nil {
		r.t.Fatal(err)
	}
}

func TestRuleSizeLimits(t *testing.T) {
	t.Run("timestamp", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
		r.pad("timestamp.json", 20000)
		errs := ExpectRejected(t, r.dir, r.rootBytes(1), "")
		wantErrContains(t, GoTUFName, errs[GoTUFName], "is larger than expected 16384")
		wantErrContains(t, TufJSName, errs[TufJSName], "Max length reached")
		wantVerify(t, r.dir, roles.RuleSize, "metadata/timestamp.json is 2")
	})
	t.Run("root", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
		r.root.Signed.Version = 2
		r.writeRoot(r.keys[metadata.ROOT])
		r.pad("2.root.json", 600000)
		errs := ExpectRejected(t, r.dir, r.rootBytes(1), "")
		wantErrContains(t, GoTUFName, errs[GoTUFName], "is larger than expected 512000")
		wantErrContains(t, TufJSName, errs[TufJSName], "Max length reached")
		wantVerify(t, r.dir, roles.RuleSize, "metadata/2.root.json is 60")
	})
	t.Run("targets 200 MB", func(t *testing.T) {
		// The snapshot lists no length: the clients' 5,000,000-byte default.
		// A sparse file: nobody reads 200 MB of it.
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
		if err := os.Truncate(filepath.Join(r.dir, "metadata", "1.targets.json"), 200<<20); err != nil {
			t.Fatal(err)
		}
		errs := ExpectRejected(t, r.dir, r.rootBytes(1), "")
		wantErrContains(t, GoTUFName, errs[GoTUFName], "is larger than expected 5000000")
		wantErrContains(t, TufJSName, errs[TufJSName], "Max length reached")
		start := time.Now()
		wantVerify(t, r.dir, roles.RuleSize, "metadata/1.targets.json is 209715200 bytes: more than the 5000000 bytes")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("verify took %s", d)
		}
	})
	t.Run("delegated targets", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: false, delegate: true})
		r.pad(delegatedRole+".json", roles.TargetsMaxLength)
		errs := ExpectRejected(t, r.dir, r.rootBytes(1), delegatedTarget)
		wantErrContains(t, GoTUFName, errs[GoTUFName], "is larger than expected 5000000")
		wantErrContains(t, TufJSName, errs[TufJSName], "Max length reached")
		wantVerify(t, r.dir, roles.RuleSize, "metadata/deleg.json is 500")
	})
}

// TestRuleLimitsAreTufJSs reads tuf-js's own defaults.
func TestRuleLimitsAreTufJSs(t *testing.T) {
	dir, err := TufJSDir()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, "node_modules", "tuf-js", "dist", "config.js"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{
		"maxRootRotations": roles.MaxRootRotations, "maxDelegations": roles.MaxDelegations,
		"rootMaxLength": roles.RootMaxLength, "timestampMaxLength": roles.TimestampMaxLength,
		"snapshotMaxLength": roles.SnapshotMaxLength, "targetsMaxLength": roles.TargetsMaxLength,
	} {
		m := regexp.MustCompile(name + `: ([0-9]+),`).FindSubmatch(src)
		if m == nil {
			t.Errorf("tuf-js config.js has no %s", name)
			continue
		}
		if got, _ := strconv.ParseInt(string(m[1]), 10, 64); got != want {
			t.Errorf("tuf-js %s = %d, rootkeeper uses %d", name, got, want)
		}
	}
}

// roleNameRepo delegates deleg/* to a role called name, written the way
// rootkeeper and go-tuf name its file (url.PathEscape).
func roleNameRepo(t *testing.T, name string) *testRepo {
	r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
	r.targets.Signed.Version++
	r.addRole(r.targets, name, []string{delegatedPattern}, delegatedTarget)
	r.writeTargetFiles()
	r.snapshot.Signed.Version++
	r.timestamp.Signed.Version++
	r.publish()
	return r
}

func TestRuleRoleNames(t *testing.T) {
	for name, want := range map[string]string{
		"a/b":           `"/" needs escaping in a URL`,
		"d\u0435leg":    "U+0435, not ASCII", // Cyrillic е
		"de\u200bleg":   "U+200B, not ASCII", // zero-width space
		"\u200fdeleg":   "U+200F, not ASCII", // right-to-left mark
		"a%2Fb":         `"%" needs escaping`,
		"releases 2024": `" " is not among the characters allowed`,
	} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			r := roleNameRepo(t, name)
			// The server decodes the escaped name and finds no such file.
			errs := ExpectRejected(t, r.dir, r.rootBytes(1), delegatedTarget)
			wantErrContains(t, GoTUFName, errs[GoTUFName], "404")
			wantErrContains(t, TufJSName, errs[TufJSName], "Failed to download")
			wantVerify(t, r.dir, roles.RuleRoleName, "role name "+strconv.Quote(name)+" is not allowed: ")
			wantVerify(t, r.dir, roles.RuleRoleName, want)
		})
	}
	t.Run("plain name", func(t *testing.T) {
		r := roleNameRepo(t, "deleg-2.x_y")
		CheckRepository(t, r.dir, r.rootBytes(1), r.files)
		verifyOK(t, r.dir)
	})
	t.Run("constructor", func(t *testing.T) {
		// tuf-js keeps trusted roles in a plain object: "constructor" is
		// found there already (Object.prototype's) and never loaded.
		r := roleNameRepo(t, "constructor")
		cs := fresh(t, r, time.Time{})
		if _, err := cs[0].Fetch(ctx(t), delegatedTarget); err != nil {
			t.Errorf("go-tuf: %v", err)
		}
		errs := RejectedBy(t, cs[1:], delegatedTarget)
		wantErrContains(t, TufJSName, errs[TufJSName], "not found")
		wantVerify(t, r.dir, roles.RuleRoleName, "built-in JavaScript property")
	})
}

func TestRuleVersionRange(t *testing.T) {
	for _, tc := range []struct {
		version int64
		tufjsOK bool
	}{
		{roles.MaxSafeInteger, true},
		{roles.MaxSafeInteger + 2, false}, // 2^53+1: JavaScript reads 2^53
	} {
		t.Run(strconv.FormatInt(tc.version, 10), func(t *testing.T) {
			r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
			r.targets.Signed.Version = tc.version
			r.snapshot.Signed.Version++
			r.timestamp.Signed.Version++
			r.publish()
			cs := fresh(t, r, time.Time{})
			if err := cs[0].Update(ctx(t)); err != nil {
				t.Errorf("go-tuf: %v", err) // go-tuf reads int64
			}
			if tc.tufjsOK {
				if err := cs[1].Update(ctx(t)); err != nil {
					t.Errorf("tuf-js: %v", err)
				}
				verifyOK(t, r.dir)
				return
			}
			errs := RejectedBy(t, cs[1:], "")
			wantErrContains(t, TufJSName, errs[TufJSName], "snapshot")
			wantVerify(t, r.dir, roles.RuleNumber, fmt.Sprintf("targets: signed.version is %d: integers from 2^53 (9007199254740992) on are beyond what tuf-js (JavaScript) reads exactly", tc.version))
		})
	}
}

// chainRepo delegates x/* from targets to d1, from d1 to d2, … dn, each
// listing x/<name>.
func chainRepo(t *testing.T, n int) *testRepo {
	r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
	r.targets.Signed.Version++
	parent := r.targets
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("d%d", i)
		parent = r.addRole(parent, name, []string{"x/*"}, "x/"+name).md
	}
	r.writeTargetFiles()
	r.snapshot.Signed.Version++
	r.timestamp.Signed.Version++
	r.publish()
	return r
}

func TestRuleDelegationDepth(t *testing.T) {
	r := chainRepo(t, roles.MaxDelegations+1)
	// Depth 32 is the deepest both clients reach; depth 33 neither does.
	CheckRepository(t, r.dir, r.rootBytes(1), map[string][]byte{"x/d32": r.files["x/d32"]})
	errs := ExpectRejected(t, r.dir, r.rootBytes(1), "x/d33")
	for c, err := range errs {
		wantErrContains(t, c, err, "not found")
	}
	wantVerify(t, r.dir, roles.RuleDepth, "d33 is delegated at depth 33 (targets → d1 → d2 → … → d32 → d33)")
	rep, err := roles.Verify(os.DirFS(r.dir), roles.VerifyOptions{CheckTargets: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 {
		t.Errorf("problems %v, want only d33's", rep.Problems)
	}
}

func TestRuleDelegationSearchCut(t *testing.T) {
	// 33 roles for x/* side by side: clients visit targets and 32 of them.
	r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
	r.targets.Signed.Version++
	for i := 1; i <= roles.MaxDelegations+1; i++ {
		name := fmt.Sprintf("s%02d", i)
		r.addRole(r.targets, name, []string{"x/*"}, "x/"+name)
	}
	r.writeTargetFiles()
	r.snapshot.Signed.Version++
	r.timestamp.Signed.Version++
	r.publish()
	CheckRepository(t, r.dir, r.rootBytes(1), map[string][]byte{"x/s32": r.files["x/s32"]})
	errs := ExpectRejected(t, r.dir, r.rootBytes(1), "x/s33")
	for c, err := range errs {
		wantErrContains(t, c, err, "not found")
	}
	wantVerify(t, r.dir, roles.RuleDepth, `s33: target "x/s33": clients give up before they reach s33`)
}

// TestRulePathHashPrefixes: go-tuf compares path_hash_prefixes with the
// base64 of the path's SHA-256, tuf-js with its hex (as the spec says), so
// go-tuf misses a target tuf-js finds.
func TestRulePathHashPrefixes(t *testing.T) {
	r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
	r.targets.Signed.Version++
	target := "x/prefixed.txt"
	sum := sha256.Sum256([]byte(target))
	r.addRole(r.targets, "prefixed", nil, target)
	dl := r.targets.Signed.Delegations
	dl.Roles[len(dl.Roles)-1].Paths = nil
	dl.Roles[len(dl.Roles)-1].PathHashPrefixes = []string{hex.EncodeToString(sum[:])[:4]}
	r.writeTargetFiles()
	r.snapshot.Signed.Version++
	r.timestamp.Signed.Version++
	r.publish()
	cs := fresh(t, r, time.Time{})
	errs := RejectedBy(t, cs[:1], target)
	wantErrContains(t, GoTUFName, errs[GoTUFName], "not found")
	if _, err := cs[1].Fetch(ctx(t), target); err != nil {
		t.Errorf("tuf-js: %v", err)
	}
	wantVerify(t, r.dir, roles.RuleDelegation, `delegation "prefixed" uses path_hash_prefixes`)
}

// TestRuleTufJSOnly covers rules where go-tuf accepts and tuf-js refuses.
func TestRuleTufJSOnly(t *testing.T) {
	tufjsRefuses := func(t *testing.T, r *testRepo, target, tufjsErr, rule, want string) {
		t.Helper()
		cs := fresh(t, r, time.Time{})
		if target == "" {
			if err := cs[0].Update(ctx(t)); err != nil {
				t.Errorf("go-tuf: %v", err)
			}
		} else if _, err := cs[0].Fetch(ctx(t), target); err != nil {
			t.Errorf("go-tuf: %v", err)
		}
		errs := RejectedBy(t, cs[1:], target)
		wantErrContains(t, TufJSName, errs[TufJSName], tufjsErr)
		wantVerify(t, r.dir, rule, want)
	}
	t.Run("timestamp meta lists more than the snapshot", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
		r.timestamp.Signed.Meta["targets.json"] = metadata.MetaFile(1)
		r.writeTimestamp()
		tufjsRefuses(t, r, "", "timestamp was signed by 0/1 keys", roles.RuleEncoding, "tuf-js keeps only snapshot.json")
	})
	t.Run("no consistent_snapshot", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: false})
		b := r.rootBytes(1)
		b = []byte(strings.Replace(string(b), `"consistent_snapshot": false,`, "", 1))
		r.writeFile(filepath.Join("metadata", "1.root.json"), b)
		tufjsRefuses(t, r, "", "consistent_snapshot must be a boolean", roles.RuleEncoding, "signed.consistent_snapshot is not in the file, go-tuf adds false")
	})
	t.Run("dot file under a wildcard", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
		r.targets.Signed.Version++
		r.addRole(r.targets, "dots", []string{"x/*"}, "x/.hidden")
		r.writeTargetFiles()
		r.snapshot.Signed.Version++
		r.timestamp.Signed.Version++
		r.publish()
		tufjsRefuses(t, r, "x/.hidden", "not found", roles.RuleTargetPath, "minimatch's '*' and '?' never match a leading '.'")
	})
	t.Run("key id listed twice", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true, delegate: true})
		d := &r.targets.Signed.Delegations.Roles[0]
		d.KeyIDs = append(d.KeyIDs, d.KeyIDs[0])
		r.bumpAll()
		tufjsRefuses(t, r, delegatedTarget, "duplicate key IDs found", roles.RuleKeyID, "lists key id ")
	})
	t.Run("expires at the reference time", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
		at := r.timestamp.Signed.Expires
		cs := fresh(t, r, at)
		if err := cs[0].Update(ctx(t)); err != nil {
			t.Errorf("go-tuf: %v", err)
		}
		errs := RejectedBy(t, cs[1:], "")
		wantErrContains(t, TufJSName, errs[TufJSName], "expired")
		rep, err := roles.Verify(os.DirFS(r.dir), roles.VerifyOptions{At: at})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK || rep.Problems[0].Rule != roles.RuleExpired {
			t.Errorf("verify at the expiry instant: %+v", rep.Problems)
		}
	})
}
