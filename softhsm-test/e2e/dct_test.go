package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/ceremony/notary"
	"github.com/rootkeeper/rootkeeper/ceremony/oci"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// Docker Content Trust end to end: image tags signed as targets from a real
// OCI registry (go-containerregistry's, on loopback), checked by go-tuf and
// tuf-js and by check-image; Notary v1 collections made by Notary's own
// library (v0.7.0) and served by a real notary-server, imported into
// repositories whose keys are on SoftHSM.

// startRegistry serves an OCI registry on 127.0.0.1 and returns host:port.
func startRegistry(t *testing.T) string {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// push writes a new random image to ref and returns what the registry
// serves for it.
func push(t *testing.T, ref string) *oci.Manifest {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	m, err := oci.Resolve(context.Background(), ref, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != m.Digest {
		t.Fatalf("Resolve: digest %s, pushed %s", m.Digest, d)
	}
	return m
}

// dctPlan generates the keys of a repository with one delegation, on its
// own tagging key, for paths, and returns its plan.
func dctPlan(t *testing.T, env *softhsm.Env, s *ceremony.Session, delegation string, paths ...string) *ceremony.Plan {
	t.Helper()
	for _, k := range []string{env.URI("root", "root"), env.URI("tagging", "targets"), env.URI("tagging", delegation), env.URI("online", "snapshot"), env.URI("online", "timestamp")} {
		generate(t, s, k, hsm.ECDSAP256)
	}
	return planFor(t, env, delegation, paths...)
}

func planFor(t *testing.T, env *softhsm.Env, delegation string, paths ...string) *ceremony.Plan {
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "dct"}
	plan.Roles.Root = role(1, "365d", env.URI("root", "root"))
	plan.Roles.Targets = role(1, "90d", env.URI("tagging", "targets"))
	plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
	plan.Delegations = []ceremony.DelegationPlan{{Name: delegation, Threshold: 1, Keys: []string{env.URI("tagging", delegation)}, Paths: paths}}
	if probs := plan.Validate(); len(probs) > 0 {
		t.Fatal(probs)
	}
	return plan
}

func info(m *oci.Manifest) clients.TargetInfo {
	return clients.TargetInfo{Length: m.Length, Hashes: map[string]string{"sha256": hex.EncodeToString(m.SHA256)}}
}

func checkImage(t *testing.T, dir, ref, nameOverride string) *oci.Verdict {
	t.Helper()
	root := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
	v, err := oci.Check(context.Background(), oci.CheckOptions{Ref: ref, Name: nameOverride, TUF: roles.LookupOptions{Dir: dir, TrustedRoot: root}})
	if err != nil {
		t.Fatalf("check-image %s: %v", ref, err)
	}
	return v
}

// TestImageTagsAcceptedByClients: tags signed by their manifests' digests,
// no files; go-tuf and tuf-js find them through the delegation; a tag
// re-pointed in the registry is caught.
func TestImageTagsAcceptedByClients(t *testing.T) {
	env := softhsm.NewTokens(t, "root", "tagging", "online")
	s, _ := newSession(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := s.Init(ctx, dctPlan(t, env, s, "images", "library/*"), dir); err != nil {
		t.Fatalf("init: %v", err)
	}
	reg := startRegistry(t)
	app, db := push(t, reg+"/library/app:v1.2"), push(t, reg+"/library/db:7")
	var inputs []ceremony.TargetInput
	for _, m := range []*oci.Manifest{app, db} {
		inputs = append(inputs, ceremony.TargetInput{Name: m.TargetName(), Digest: &ceremony.DigestInput{Length: m.Length, Hashes: map[string][]byte{"sha256": m.SHA256}, Custom: m.Custom()}})
	}
	if _, err := s.AddTargets(ctx, dir, "images", inputs); err != nil {
		t.Fatalf("targets add: %v", err)
	}
	if files, err := os.ReadDir(filepath.Join(dir, "targets")); err != nil || len(files) != 0 {
		t.Errorf("targets/ must stay empty for image tags (no file is copied): %d entries, %v", len(files), err)
	}
	clients.CheckTargetInfos(t, dir, readFile(t, filepath.Join(dir, "metadata/1.root.json")),
		map[string]clients.TargetInfo{"library/app:v1.2": info(app), "library/db:7": info(db)})
	if v := checkImage(t, dir, reg+"/library/app:v1.2", ""); v.State != oci.Verified {
		t.Fatalf("check-image: %+v", v)
	}
	push(t, reg+"/library/app:v1.2") // the registry re-points the tag
	if v := checkImage(t, dir, reg+"/library/app:v1.2", ""); v.State != oci.Mismatch || !strings.Contains(v.Problem, "not the manifest the tagging key signed") {
		t.Fatalf("re-pointed tag: %+v", v)
	}
	if v := checkImage(t, dir, reg+"/library/db:7", "library/app:v1.2"); v.State != oci.Mismatch {
		t.Fatalf("another image under a signed name: %+v", v)
	}
}

var (
	notaryOnce sync.Once
	notaryBin  string
	notaryErr  error
)

// notaryBins builds softhsm-test/notary's fixture generator, notary-server
// and the notary client v0.7.0 once per test run (about 30 s cold on two cores,
// a few seconds from Go's build cache).
func notaryBins(t *testing.T) string {
	t.Helper()
	notaryOnce.Do(func() {
		start := time.Now()
		if notaryBin, notaryErr = os.MkdirTemp("", "rootkeeper-notary-"); notaryErr != nil {
			return
		}
		cmd := exec.Command(goTool(), "build", "-C", "../notary", "-o", notaryBin+"/", "./cmd/notary-fixture",
			"github.com/theupdateframework/notary/cmd/notary-server", "github.com/theupdateframework/notary/cmd/notary")
		if out, err := cmd.CombinedOutput(); err != nil {
			notaryErr = fmt.Errorf("%v\n%s", err, out)
		}
		t.Logf("built notary-fixture, notary-server and notary v0.7.0 in %s", time.Since(start).Round(time.Millisecond))
	})
	if notaryErr != nil {
		t.Fatalf("building softhsm-test/notary: %v", notaryErr)
	}
	return notaryBin
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// startNotaryServer runs notary-server with memory storage and the
// in-process signer on a free loopback port.
func startNotaryServer(t *testing.T, bin string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf := filepath.Join(t.TempDir(), "server.json")
	os.WriteFile(conf, []byte(`{"server":{"http_addr":"`+addr+`"},"trust_service":{"type":"local"},"storage":{"backend":"memory"}}`), 0o600)
	var logs bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "notary-server"), "-config", conf)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(url + "/_notary_server/health")
		if err == nil && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			return url
		}
		if i == 100 {
			t.Fatalf("notary-server did not come up: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type fixtureDesc struct {
	RootCertIDs []string `json:"root_cert_ids"`
	RootCert    string   `json:"root_cert_file"`
}

func runFixture(t *testing.T, bin string, args ...string) (*fixtureDesc, *x509.Certificate) {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "notary-fixture"), args...).Output()
	if err != nil {
		t.Fatalf("notary-fixture %v: %v\n%s", args, err, err.(*exec.ExitError).Stderr)
	}
	var d fixtureDesc
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	b := readFile(t, d.RootCert)
	block, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &d, c
}

func target(m *oci.Manifest) string {
	return fmt.Sprintf("%s=%s:%d", m.Tag, hex.EncodeToString(m.SHA256), m.Length)
}

// TestNotaryImportFromServer: a collection initialised, published and then
// root-rotated on a real notary-server v0.7.0 through Notary's client
// library, imported with the first root certificate pinned (the rotation
// is checked), accepted by go-tuf and tuf-js, and its tags checked against
// the registry. (notary-server v0.7.0 built with Go ≥ 1.17 refuses uploads
// of delegations, notary#1630: delegations come from a trust directory in
// TestNotaryImportTrustDir.)
func TestNotaryImportFromServer(t *testing.T) {
	bin := notaryBins(t)
	server := startNotaryServer(t, bin)
	reg := startRegistry(t)
	v1, latest := push(t, reg+"/app:v1"), push(t, reg+"/app:latest")
	gun := reg + "/app"
	_, cert := runFixture(t, bin, "publish", "-server", server, "-trust-dir", t.TempDir(), "-gun", gun, "-rotate-root",
		"-target", target(v1), "-target", target(latest))

	env := softhsm.NewTokens(t, "root", "tagging", "online")
	s, ui := newSession(t)
	dir := filepath.Join(t.TempDir(), "repo")
	plan := dctPlan(t, env, s, "releases", "*")
	res, err := s.ImportNotary(context.Background(), plan, dir,
		ceremony.NotaryImport{GUN: gun, Source: &notary.Server{URL: server, GUN: gun}, Pin: notary.Pin{Certs: []*x509.Certificate{cert}}})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if res.Details["notary_root_version"] != 2 || res.Details["notary_chain_from"] != 1 {
		t.Errorf("root v%v from v%v, want the rotation v1 → v2 followed", res.Details["notary_root_version"], res.Details["notary_chain_from"])
	}
	if !strings.Contains(strings.Join(ui.lines, "\n"), "in root v1, rotations v1 → v2 checked") {
		t.Errorf("the officer was not shown the rotation:\n%s", strings.Join(ui.lines, "\n"))
	}
	clients.CheckTargetInfos(t, dir, readFile(t, filepath.Join(dir, "metadata/1.root.json")),
		map[string]clients.TargetInfo{"v1": info(v1), "latest": info(latest)})
	for _, ref := range []string{reg + "/app:v1", reg + "/app:latest"} {
		if v := checkImage(t, dir, ref, ""); v.State != oci.Verified {
			t.Errorf("check-image %s: %+v", ref, v)
		}
	}
	if tr := string(readFile(t, filepath.Join(dir, "transcript.jsonl"))); !strings.Contains(tr, `"notary_gun":"`+gun+`"`) || !strings.Contains(tr, `"notary_source":"notary server `+server+`"`) {
		t.Errorf("transcript:\n%s", tr)
	}

	// A server answering with other bytes for a file is refused, nothing written.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(server + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(r.URL.Path, "/targets.") {
			b = bytes.Replace(b, []byte(`"Targets"`), []byte(`"Targetz"`), 1) // same length, other bytes
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	}))
	defer proxy.Close()
	dir2 := filepath.Join(t.TempDir(), "repo")
	_, err = s.ImportNotary(context.Background(), plan, dir2,
		ceremony.NotaryImport{GUN: gun, Source: &notary.Server{URL: proxy.URL, GUN: gun}, Pin: notary.Pin{Certs: []*x509.Certificate{cert}}})
	if err == nil || !strings.Contains(err.Error(), "does not verify: targets: its sha256 checksum is not the one the parent metadata lists") {
		t.Fatalf("tampered targets: %v", err)
	}
	if _, err := os.Stat(dir2); !os.IsNotExist(err) {
		t.Errorf("%s was made: %v", dir2, err)
	}
}

// TestNotaryImportTrustDir: a collection with a targets/releases delegation
// (ed25519) and an RSA targets key, made by Notary's library into a trust
// directory, imported with the certificate id pinned: the releases tags
// land in the releases delegation, and clients and check-image agree.
func TestNotaryImportTrustDir(t *testing.T) {
	bin := notaryBins(t)
	reg := startRegistry(t)
	v12, v13, latest := push(t, reg+"/app:v1.2"), push(t, reg+"/app:v1.3"), push(t, reg+"/app:latest")
	gun, td := reg+"/app", t.TempDir()
	d, _ := runFixture(t, bin, "make", "-trust-dir", td, "-gun", gun, "-root-alg", "rsa", "-targets-alg", "rsa", "-releases-alg", "ed25519",
		"-release", target(v12), "-release", target(v13), "-target", target(latest))

	env := softhsm.NewTokens(t, "root", "tagging", "online")
	s, _ := newSession(t)
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := s.ImportNotary(context.Background(), dctPlan(t, env, s, "releases", "v*"), dir,
		ceremony.NotaryImport{GUN: gun, Source: &notary.TrustDir{Dir: td, GUN: gun}, Pin: notary.Pin{CertIDs: d.RootCertIDs}}); err != nil {
		t.Fatalf("import: %v", err)
	}
	list, err := ceremony.ListTargets(dir, "releases")
	if err != nil || len(list) != 2 || list[0].Name != "v1.2" || !list[0].External {
		t.Fatalf("releases lists %+v (%v)", list, err)
	}
	clients.CheckTargetInfos(t, dir, readFile(t, filepath.Join(dir, "metadata/1.root.json")),
		map[string]clients.TargetInfo{"v1.2": info(v12), "v1.3": info(v13), "latest": info(latest)})
	for _, ref := range []string{reg + "/app:v1.2", reg + "/app:v1.3", reg + "/app:latest"} {
		if v := checkImage(t, dir, ref, ""); v.State != oci.Verified {
			t.Errorf("check-image %s: %+v", ref, v)
		}
	}
	rep, err := ceremony.Verify(dir, nil, time.Now())
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep.Problems)
	}
}
