package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// TufJSBinsEnv=0 lets a developer skip tuf-js in TestHashedBins16384 on
// a local run (never in CI). tuf-js 5 (@tufjs/models 5.0.2) parses
// snapshot meta in time quadratic in its entries: with 16,384 bins one
// tuf-js update takes about 90 s on a 2-core machine (docs/performance.md),
// which the suite affords. TestHashedBinsBothClients checks both clients,
// fresh and with state, through a revocation on 2,048 bins.
const TufJSBinsEnv = "ROOTKEEPER_E2E_TUFJS_16K"

// newBinsRepo makes a repository whose targets delegates to n hashed
// bins (TAP 15, the PEP 458 layout), all signed by one Ed25519 key on
// SoftHSM, and adds a target to its bin.
func newBinsRepo(t *testing.T, n int) (s *ceremony.Session, env *softhsm.Env, dir, bin string, app []byte) {
	t.Helper()
	phase := func(what string, from time.Time) { t.Logf("%-44s %6.1fs", what, time.Since(from).Seconds()) }
	env = softhsm.NewTokens(t, "root", "tagging", "online")
	s, _ = newSession(t)
	ctx := context.Background()
	for _, u := range []string{env.URI("root", "root"), env.URI("tagging", "targets"), env.URI("tagging", "bins"), env.URI("tagging", "bins-2"),
		env.URI("online", "snapshot"), env.URI("online", "timestamp")} {
		generate(t, s, u, hsm.Ed25519)
	}
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "bins"}
	plan.Roles.Root = role(1, "365d", env.URI("root", "root"))
	plan.Roles.Targets = role(1, "90d", env.URI("tagging", "targets"))
	plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
	dir = filepath.Join(t.TempDir(), "repo")
	if _, err := s.Init(ctx, plan, dir); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	res, err := s.DelegateAdd(ctx, dir, ceremony.DelegateOptions{Role: "bins", Keys: []string{env.URI("tagging", "bins")}, Bins: n})
	if err != nil {
		t.Fatal(err)
	}
	phase(fmt.Sprintf("delegate add --bins %d (sign, preflight, write)", n), t0)
	if res.Versions["bins"] != 1 || len(res.Written) < n {
		t.Fatalf("result: bins v%d, %d files written", res.Versions["bins"], len(res.Written))
	}
	t0 = time.Now()
	app = []byte(fmt.Sprintf("a package in one of %d bins\n", n))
	if bin, err = ceremony.BinFor(dir, "bins", "pkgs/app-1.0.tgz"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTargets(ctx, dir, bin, []ceremony.TargetInput{{Name: "pkgs/app-1.0.tgz", Data: app}}); err != nil {
		t.Fatal(err)
	}
	phase("targets add to "+bin, t0)
	return s, env, dir, bin, app
}

// TestHashedBins16384: 16,384 hashed bins created, and a target in a bin
// fetched by go-tuf and by tuf-js. Each phase's time is logged.
func TestHashedBins16384(t *testing.T) {
	start := time.Now()
	_, _, dir, _, app := newBinsRepo(t, roles.MaxBins)
	root := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
	mdURL, tgURL := clients.Serve(t, dir)
	cfg := clients.Config{TrustedRoot: root, MetadataURL: mdURL, TargetsURL: tgURL}
	cs := []clients.Client{clients.NewGoTUF(t, cfg)}
	if os.Getenv(TufJSBinsEnv) == "0" && os.Getenv("CI") != "true" {
		t.Logf("tuf-js skipped at 16,384 bins (%s=0)", TufJSBinsEnv)
	} else {
		cs = append(cs, clients.NewTufJS(t, cfg))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, c := range cs {
		t0 := time.Now()
		if err := clients.Verify(ctx, c, map[string][]byte{"pkgs/app-1.0.tgz": app}); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
		t.Logf("%-44s %6.1fs", c.Name()+" fetches the target", time.Since(t0).Seconds())
	}
	t.Logf("%-44s %6.1fs", "total", time.Since(start).Seconds())
}

// TestHashedBinsBothClients: the same layout with 2,048 bins, both clients
// fetch the target; then the bins key is revoked with a replacement and
// --resign-targets: every bin is re-keyed, the bin with the target is
// re-signed, and both clients, fresh and with state, still fetch it.
func TestHashedBinsBothClients(t *testing.T) {
	s, env, dir, bin, app := newBinsRepo(t, 2048)
	root := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
	mdURL, tgURL := clients.Serve(t, dir)
	cs := clients.All(t, clients.Config{TrustedRoot: root, CacheDir: t.TempDir(), MetadataURL: mdURL, TargetsURL: tgURL})
	want := map[string][]byte{"pkgs/app-1.0.tgz": app}
	updateAll(t, "2048 bins", cs, want, 1)

	res, err := s.Revoke(context.Background(), dir, ceremony.RevokeOptions{Key: env.URI("tagging", "bins"), Reason: "bins key rotated out",
		ResignTargets: true, Add: map[string][]string{"bins": {env.URI("tagging", "bins-2")}}})
	if err != nil {
		t.Fatal(err)
	}
	rev := res.Details["revocation"].(*ceremony.Revocation)
	if rev.TargetsResigned != 1 || rev.Roles[0].Bins != 2048 {
		t.Fatalf("revocation %+v", rev.Roles)
	}
	updateAll(t, "after revoking the bins key", cs, want, 1)
	clients.CheckRepository(t, dir, root, want)
	if use, err := ceremony.KeyRoles(dir, env.URI("tagging", "bins-2")); err != nil || len(use.Roles) != 1 || len(use.Roles[0].Bins) != 2048 {
		t.Fatalf("the new key signs %+v (%v), want the 2048 bins", use, err)
	}
	_ = bin
}

// BenchmarkResignBins re-signs all 16,384 bins (a new version of each,
// signed by one Ed25519 key on SoftHSM and verified at once: the work of a
// bins key rotation or revocation), then a new snapshot listing them and a
// new timestamp, against the floor: 16,384 + 2 bare C_SignInit+C_Sign
// calls with the same key in the same token, on messages of the same sizes.
//
//	go test -run '^$' -bench BenchmarkResignBins -benchtime 3x ./softhsm-test/e2e
func BenchmarkResignBins(b *testing.B) {
	env := softhsm.NewTokens(b, "bench")
	kr := hsm.NewKeyring(hsm.Options{})
	defer kr.Close()
	ctx := context.Background()
	uri := env.URI("bench", "bins")
	info, err := kr.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.Ed25519})
	if err != nil {
		b.Fatal(err)
	}
	hw, err := kr.Signer(ctx, uri)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := roles.NewSigner(hw)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	rk := roles.RoleKeys{Keys: []*metadata.Key{signer.Key()}, Threshold: 1}
	repo, err := roles.New(roles.Bootstrap{Root: rk, Targets: rk, Snapshot: rk, Timestamp: rk, Now: now,
		Expires: map[string]time.Time{"root": now.Add(365 * 24 * time.Hour), "targets": now.Add(90 * 24 * time.Hour),
			"snapshot": now.Add(21 * 24 * time.Hour), "timestamp": now.Add(7 * 24 * time.Hour)}})
	if err != nil {
		b.Fatal(err)
	}
	bins, err := repo.AddHashedBins("targets", "bins", roles.MaxBins, rk, now.Add(90*24*time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range bins {
		if err := roles.Sign(repo.Delegated[name], signer); err != nil {
			b.Fatal(err)
		}
	}
	top := func(exp time.Time) {
		if err := repo.UpdateSnapshot(exp); err != nil {
			b.Fatal(err)
		}
		if err := roles.Sign(repo.Snapshot, signer); err != nil {
			b.Fatal(err)
		}
		if err := repo.UpdateTimestamp(exp); err != nil {
			b.Fatal(err)
		}
		if err := roles.Sign(repo.Timestamp, signer); err != nil {
			b.Fatal(err)
		}
	}
	top(now.Add(7 * 24 * time.Hour))
	snLen, tsLen := canonicalLen(b, repo.Snapshot.Signed), canonicalLen(b, repo.Timestamp.Signed)
	b.Run("rootkeeper", func(b *testing.B) {
		exp := now.Add(90 * 24 * time.Hour)
		for b.Loop() {
			for _, name := range bins {
				if err := repo.BumpRole(name, exp); err != nil {
					b.Fatal(err)
				}
				if err := roles.Sign(repo.Delegated[name], signer); err != nil {
					b.Fatal(err)
				}
			}
			top(now.Add(7 * 24 * time.Hour))
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(bins)), "µs/bin")
	})
	b.Run("raw-C_Sign", func(b *testing.B) {
		p11 := pkcs11.New(env.ModulePath)
		if p11 == nil {
			b.Fatal("cannot load the PKCS#11 module")
		}
		if err := p11.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			b.Fatal(err)
		}
		slots, err := p11.GetSlotList(true)
		if err != nil {
			b.Fatal(err)
		}
		var slot uint
		found := false
		for _, sl := range slots {
			if ti, err := p11.GetTokenInfo(sl); err == nil && ti.Label == "bench" {
				slot, found = sl, true
			}
		}
		if !found {
			b.Fatal("no token bench")
		}
		sh, err := p11.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			b.Fatal(err)
		}
		defer p11.CloseSession(sh)
		if err := p11.Login(sh, pkcs11.CKU_USER, softhsm.PIN); err != nil && err != pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
			b.Fatal(err)
		}
		id, _ := hex.DecodeString(info.ID)
		if err := p11.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id)}); err != nil {
			b.Fatal(err)
		}
		objs, _, err := p11.FindObjects(sh, 2)
		p11.FindObjectsFinal(sh)
		if err != nil || len(objs) != 1 {
			b.Fatalf("private key: %v (%d found)", err, len(objs))
		}
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}
		msg := []byte(fmt.Sprintf("%0400d", 0)) // about the size of a bin's canonical JSON
		sn, ts := make([]byte, snLen), make([]byte, tsLen)
		for b.Loop() {
			for _, m := range append(slices.Repeat([][]byte{msg}, len(bins)), sn, ts) {
				if err := p11.SignInit(sh, mech, objs[0]); err != nil {
					b.Fatal(err)
				}
				if _, err := p11.Sign(sh, m); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(bins)), "µs/bin")
	})
}

// canonicalLen is the length of the canonical JSON of signed: what is
// signed.
func canonicalLen(b *testing.B, signed any) int {
	data, err := cjson.EncodeCanonical(signed)
	if err != nil {
		b.Fatal(err)
	}
	return len(data)
}

// ckmEdDSA is CKM_EDDSA (PKCS#11 3.0), which miekg/pkcs11 does not name.
const ckmEdDSA = 0x00001057
