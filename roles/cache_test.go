package roles

import (
	"bytes"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// checkAll runs what a preflight runs over after (and before): Verify,
// CheckVersions and CheckClients, with one cache shared by all of them or,
// withCache false, with no cache at all. It returns everything they said.
func checkAll(t *testing.T, before, after fstest.MapFS, at time.Time, withCache bool) string {
	t.Helper()
	uncached = !withCache
	defer func() { uncached = false }()
	var c *Cache
	if withCache {
		c = NewCache()
	}
	var out bytes.Buffer
	for _, opts := range []VerifyOptions{
		{At: at, CheckTargets: true, Cache: c, Margins: map[string]time.Duration{"*": time.Hour}},
		{At: at, Cache: c, TrustedRoot: after["metadata/1.root.json"].Data},
		{At: at.Add(400 * day), Cache: c}, // everything expired: the walk without expiry too
	} {
		rep, err := Verify(after, opts)
		fmt.Fprintf(&out, "verify: %+v %v\n", rep, err)
	}
	var b fs.FS
	if before != nil {
		b = before
		fmt.Fprintf(&out, "versions: %+v\n", CheckVersions(before, after, c))
	}
	for _, at := range []time.Time{at, at.Add(2 * day)} {
		probs, err := CheckClients(after, ClientCheckOptions{At: at, Before: b, Cache: c})
		fmt.Fprintf(&out, "clients: %+v %v\n", probs, err)
	}
	return out.String()
}

// The cache changes nothing in what the checks find: every scenario gives
// the same reports, problems and client verdicts with and without it.
func TestCacheSameResults(t *testing.T) {
	at := time.Now()
	type scenario struct {
		name          string
		before, after fstest.MapFS
	}
	var cases []scenario

	tr := newTestRepo(t, true)
	v1 := fsOf(t, tr.Repo, testTargets)
	cases = append(cases, scenario{"unchanged", v1, v1}, scenario{"fresh", nil, v1})

	// A chain v1 → v4 with new keys each time; clients hold v1, v2 or v3.
	chain := cloneRepo(t, v1)
	signers := tr.root
	var published fstest.MapFS
	for v := 2; v <= 4; v++ {
		next := []*Signer{newSigner(t, "p256"), newSigner(t, "ed25519")}
		must(t, chain.BumpRole("root", time.Now().Add(365*day)))
		must(t, chain.SetRoleKeys("root", RoleKeys{Keys: []*metadata.Key{next[0].Key(), next[1].Key()}, Threshold: 2}))
		for _, s := range append(append([]*Signer{}, signers...), next...) {
			must(t, Sign(chain.Root(), s))
		}
		signers = next
		if v == 3 {
			published = fsOf(t, chain, testTargets)
		}
	}
	must(t, chain.UpdateTimestamp(time.Now().Add(day)))
	must(t, Sign(chain.Timestamp, tr.timestamp))
	v4 := fsOf(t, chain, testTargets)
	cases = append(cases, scenario{"chain from v1", v1, v4}, scenario{"chain from v3", published, v4})

	// v4 whose last root lacks the previous root's threshold.
	bad := cloneRepo(t, published)
	must(t, bad.BumpRole("root", time.Now().Add(365*day)))
	must(t, Sign(bad.Root(), signers[0]))
	cases = append(cases, scenario{"broken chain", published, fsOf(t, bad, testTargets)})

	// Tampered files, each in turn.
	for _, name := range []string{"metadata/2.root.json", "metadata/timestamp.json", "metadata/1.snapshot.json", "metadata/1.targets.json", "metadata/1.releases.json"} {
		after := fstest.MapFS{}
		for p, f := range v4 {
			after[p] = f
		}
		if f, ok := after[name]; ok {
			after[name] = &fstest.MapFile{Data: bytes.Replace(f.Data, []byte(`"version": `), []byte(`"version": 9`), 1)}
		}
		cases = append(cases, scenario{"tampered " + name, published, after})
	}

	// A timestamp rolled back, and one fast-forwarded by an attacker.
	rb := cloneRepo(t, v4)
	rb.Timestamp.Signed.Version = 1
	rb.Timestamp.Signatures = nil
	must(t, Sign(rb.Timestamp, tr.timestamp))
	cases = append(cases, scenario{"timestamp rollback", v4, fsOf(t, rb, testTargets)})
	ff := cloneRepo(t, v1)
	must(t, ff.BumpRole("timestamp", time.Now().Add(day)))
	ff.Timestamp.Signed.Version = 1 << 40
	must(t, Sign(ff.Timestamp, tr.timestamp))
	attacked := fsOf(t, ff, testTargets)
	cases = append(cases, scenario{"fast-forwarded", attacked, v1})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := checkAll(t, tc.before, tc.after, at, false)
			got := checkAll(t, tc.before, tc.after, at, true)
			if got != want {
				t.Fatalf("with the cache:\n%s\nwithout:\n%s", got, want)
			}
			t.Logf("%d reports not OK, %d client problems", strings.Count(want, "OK:false"), strings.Count(want, "go-tuf client"))
		})
	}
}

// LoadShared sees the repository Load sees, parsing nothing Verify parsed.
func TestLoadShared(t *testing.T) {
	tr := newTestRepo(t, true)
	fsys := fsOf(t, tr.Repo, testTargets)
	c := NewCache()
	verifyOK(t, fsys, VerifyOptions{Cache: c})
	parsed := len(c.parsed)
	shared, err := LoadShared(fsys, c)
	must(t, err)
	if len(c.parsed) != parsed {
		t.Errorf("LoadShared parsed %d more files", len(c.parsed)-parsed)
	}
	own, err := Load(fsys)
	must(t, err)
	if got, want := fmt.Sprintf("%+v", shared.Delegations()), fmt.Sprintf("%+v", own.Delegations()); got != want {
		t.Fatalf("delegations %s, want %s", got, want)
	}
	if shared.Root().Signed.Version != own.Root().Signed.Version || len(shared.Delegated) != len(own.Delegated) ||
		shared.Timestamp.Signed.Version != own.Timestamp.Signed.Version {
		t.Fatal("LoadShared and Load differ")
	}
}

// A signature rootkeeper makes is verified at once (Signer.SignPayloadIn,
// Cache.VerifySignature); the change's cache remembers that result for
// exactly that key, payload and signature, and only when the check passed,
// so that the preflight does not verify it again. What it remembers is
// what the client rules' own check finds.
func TestCacheRemembersVerifiedSignatures(t *testing.T) {
	payload := []byte(`{"_type":"root","version":2}`)
	for _, kind := range []string{"p256", "p384", "ed25519", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			c := NewCache()
			s := newSigner(t, kind)
			sig, err := s.SignPayloadIn(c, payload)
			must(t, err)
			if len(c.sigs) != 1 {
				t.Fatalf("%d signature results remembered, want 1", len(c.sigs))
			}
			pub, _, err := c.key(s.key)
			must(t, err)
			if got, want := c.checkSig(s.key, pub, payload, sig), (*Cache)(nil).checkSig(s.key, pub, payload, sig); got != want || !got.valid {
				t.Fatalf("remembered %+v, the client rules find %+v", got, want)
			}
			// Another payload, or another signature: not what was checked.
			other := append([]byte{}, payload...)
			other[len(other)-2] = '3'
			if r := c.checkSig(s.key, pub, other, sig); r.valid {
				t.Fatal("a signature over other bytes counted as valid")
			}
			bad := append([]byte{}, sig...)
			bad[len(bad)/2] ^= 1
			if err := c.VerifySignature(s.key, payload, bad); err == nil {
				t.Fatal("a damaged signature verified")
			}
			if r := c.checkSig(s.key, pub, payload, bad); r.valid {
				t.Fatal("a damaged signature counted as valid")
			}
			if err := (*Cache)(nil).VerifySignature(s.key, payload, sig); err != nil {
				t.Fatalf("without a cache: %v", err)
			}
		})
	}
	// A signature the strict check refuses (raw r||s) is not remembered:
	// the client rules' check still runs and finds it lax.
	c := NewCache()
	k := newKey(t, "p256")
	s, err := NewSigner(&fakeSigner{Signer: k, mangle: rawRS(32)})
	must(t, err)
	if _, err := s.SignPayloadIn(c, payload); err == nil {
		t.Fatal("a raw r||s signature passed the check at signing")
	}
	if len(c.sigs) != 0 {
		t.Fatalf("a refused signature was remembered: %+v", c.sigs)
	}
}

// Repo.Needed checks signatures through the Repo's cache, which the
// change's preflight gets (ceremony/preflight.go): the current root's
// signatures checked by BumpRole are not checked again, and the report is
// the one of a preflight with a cache of its own.
func TestRepoCacheSharedWithVerify(t *testing.T) {
	tr := newTestRepo(t, true)
	fsys := fsOf(t, tr.Repo, testTargets)
	at := time.Now()
	c := tr.Repo.Cache()
	reqs, err := tr.Repo.Needed(metadata.ROOT)
	must(t, err)
	if len(reqs) == 0 || !reqs[0].Met() {
		t.Fatalf("root requirements %+v", reqs)
	}
	n := len(c.sigs)
	if n == 0 {
		t.Fatal("Needed checked no signature through the Repo's cache")
	}
	shared, err := Verify(fsys, VerifyOptions{At: at, Cache: c})
	must(t, err)
	own, err := Verify(fsys, VerifyOptions{At: at})
	must(t, err)
	if fmt.Sprintf("%+v", shared) != fmt.Sprintf("%+v", own) {
		t.Fatalf("with the Repo's cache:\n%+v\nwith its own:\n%+v", shared, own)
	}
	if !shared.OK {
		t.Fatalf("report %+v", shared.Problems)
	}
}

// Verify decodes each top-level file once: the scan takes the parse of the
// client step that trusted the same bytes (Cache.adopt, prewalk). Only the
// delegated role, whose client step is not memoized, is decoded by the
// scan itself as well.
func TestVerifyDecodesOnce(t *testing.T) {
	tr := newTestRepo(t, true)
	fsys := fsOf(t, tr.Repo, testTargets)
	count := func() int64 {
		t.Helper()
		before := parseCount.Load()
		rep, err := Verify(fsys, VerifyOptions{})
		if err != nil || !rep.OK {
			t.Fatalf("%v %+v", err, rep)
		}
		return parseCount.Load() - before
	}
	if n := count(); n != 1 {
		t.Errorf("Verify decoded %d files itself, want 1 (the delegated role): the client steps' parses are not shared", n)
	}
	uncached = true
	defer func() { uncached = false }()
	if n := count(); n < 5 {
		t.Errorf("without the cache Verify decoded %d files itself, want every file (root, timestamp, snapshot, targets, releases)", n)
	}
}
