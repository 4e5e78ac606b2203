package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/hsm/yubikey"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/pivcard"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// Remote ceremonies through signing bundles, as they happen: every
// officer on a machine of their own — three SoftHSM token directories
// (each its own SOFTHSM2_CONF) and two virtual YubiKeys — running
// rootkeeper as a separate process, with nothing shared but copies of the
// bundle file; the custodian's machine holds the online and tagging keys
// and no root key at all. Every result is checked by go-tuf and tuf-js
// clients that keep their state.

// rkBin is the rootkeeper binary the remote tests run, built once.
var rkBin struct {
	once sync.Once
	path string
	err  error
}

func rootkeeperBin(t *testing.T) string {
	t.Helper()
	rkBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "rootkeeper-e2e-bin-")
		if err != nil {
			rkBin.err = err
			return
		}
		rkBin.path = filepath.Join(dir, "rootkeeper")
		out, err := exec.Command("go", "build", "-o", rkBin.path, "github.com/rootkeeper/rootkeeper/cmd/rootkeeper").CombinedOutput()
		if err != nil {
			rkBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if rkBin.err != nil {
		t.Fatal(rkBin.err)
	}
	return rkBin.path
}

// machine is where one person runs rootkeeper: a working directory and an
// environment (the SoftHSM configuration of their own tokens, if any).
type machine struct {
	name, dir string
	env       []string
}

// remoteRig is the cast: the custodian and the officers.
type remoteRig struct {
	bin, roots string // the binary; the YubiKeys' attestation CA (--attestation-roots)
	custodian  *machine
	officers   []*officer
}

// officer is one officer: their machine and their root key.
type officer struct {
	*machine
	uri    string // the root key, with its pin-source
	keyID  string
	export string // the key export file, on the custodian's machine once sent
}

func newMachine(t *testing.T, name string, env *softhsm.Env) *machine {
	m := &machine{name: name, dir: filepath.Join(t.TempDir(), name)}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOFTHSM2_CONF=") && !strings.HasPrefix(kv, "ROOTKEEPER_PIN=") {
			m.env = append(m.env, kv)
		}
	}
	module, _ := softhsm.ModulePath()
	m.env = append(m.env, yubikey.WaitEnv+"=0", "ROOTKEEPER_PIN=", "ROOTKEEPER_PKCS11_MODULE="+module)
	if env != nil {
		// A machine with SoftHSM tokens has no YubiKey: it does not
		// reach the one pcscd of the test machine, which the officers'
		// YubiKeys sit behind.
		m.env = append(m.env, "SOFTHSM2_CONF="+env.ConfPath, "PCSCLITE_CSOCK_NAME="+filepath.Join(m.dir, "no-pcscd.comm"))
	} else {
		m.env = append(m.env, "SOFTHSM2_CONF="+filepath.Join(m.dir, "no-softhsm.conf"))
	}
	return m
}

type rkResult struct {
	stdout, stderr string
	err            error
}

// rk runs rootkeeper on m, in its directory.
func (r *remoteRig) rk(t *testing.T, m *machine, args ...string) rkResult {
	t.Helper()
	cmd := exec.Command(r.bin, append([]string{"--attestation-roots", r.roots}, args...)...)
	cmd.Dir, cmd.Env = m.dir, m.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return rkResult{out.String(), errb.String(), err}
}

// ok runs rootkeeper on m and requires it to succeed; it returns stdout.
func (r *remoteRig) ok(t *testing.T, m *machine, args ...string) string {
	t.Helper()
	res := r.rk(t, m, args...)
	if res.err != nil {
		t.Fatalf("%s: rootkeeper %s: %v\n%s%s", m.name, strings.Join(args, " "), res.err, res.stdout, res.stderr)
	}
	return res.stdout
}

// refused runs rootkeeper on m and requires it to fail with exactly one
// error line, matching want; the custodian's repository dir stays
// byte-identical.
func (r *remoteRig) refused(t *testing.T, dir, want string, args ...string) string {
	t.Helper()
	before := treeHash(t, dir)
	res := r.rk(t, r.custodian, args...)
	if res.err == nil {
		t.Fatalf("rootkeeper %s succeeded, want %q\n%s%s", strings.Join(args, " "), want, res.stdout, res.stderr)
	}
	if n := strings.Count(res.stderr, "rootkeeper: error: "); n != 1 {
		t.Errorf("rootkeeper %s: %d error lines, want one:\n%s", strings.Join(args, " "), n, res.stderr)
	}
	if !regexp.MustCompile(want).MatchString(res.stderr) {
		t.Errorf("rootkeeper %s: want %q in:\n%s", strings.Join(args, " "), want, res.stderr)
	}
	if treeHash(t, dir) != before {
		t.Fatalf("rootkeeper %s changed the repository", strings.Join(args, " "))
	}
	return res.stderr
}

// send copies a file from one machine to another (mail, a USB stick).
func send(t *testing.T, from *machine, name string, to *machine, as string) string {
	t.Helper()
	dst := filepath.Join(to.dir, as)
	if err := os.WriteFile(dst, readFile(t, filepath.Join(from.dir, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	return as
}

// collect sends bundle to each officer, has each sign their copy on their
// own machine and send it back; it returns the copies' names.
func (r *remoteRig) collect(t *testing.T, bundle string, who ...*officer) []string {
	t.Helper()
	var back []string
	for _, o := range who {
		send(t, r.custodian, bundle, o.machine, bundle)
		out := r.ok(t, o.machine, "sign", bundle, "--key", o.uri, "--yes")
		if !strings.Contains(out, "with "+o.keyID[:12]) {
			t.Fatalf("%s did not sign with %s:\n%s", o.name, o.keyID[:12], out)
		}
		back = append(back, send(t, o.machine, bundle, r.custodian, o.name+"-"+bundle))
	}
	return back
}

var exportedID = regexp.MustCompile(`exported key ([0-9a-f]{64}) `)

// exportKey has o export its root key at uri and send the file to the
// custodian.
func (r *remoteRig) exportKey(t *testing.T, o *officer, uri, as string) string {
	t.Helper()
	out := r.ok(t, o.machine, "key", "export", uri, "--out", "key.json")
	m := exportedID.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("key export printed no key id:\n%s", out)
	}
	o.uri, o.keyID = uri, m[1]
	o.export = send(t, o.machine, "key.json", r.custodian, as)
	return m[1]
}

// newRemote sets up five officers — three SoftHSM tokens in directories
// of their own, two virtual YubiKeys — and a custodian with the tagging
// and online keys. Each officer generates a root key and exports it.
func newRemote(t *testing.T) *remoteRig {
	ca, err := pivcard.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	r := &remoteRig{bin: rootkeeperBin(t), roots: filepath.Join(t.TempDir(), "attestation-ca.pem")}
	if err := os.WriteFile(r.roots, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := softhsm.NewTokens(t, "tagging", "online")
	r.custodian = newMachine(t, "custodian", tok)
	for i, alg := range []string{"ecdsa-p256", "ed25519", "ecdsa-p256"} {
		env := softhsm.NewTokens(t, fmt.Sprintf("officer-%d", i+1))
		o := &officer{machine: newMachine(t, fmt.Sprintf("officer%d", i+1), env)}
		uri := env.URI(fmt.Sprintf("officer-%d", i+1), "root")
		r.ok(t, o.machine, "key", "generate", uri, "--algorithm", alg)
		r.exportKey(t, o, uri, o.name+".key.json")
		r.officers = append(r.officers, o)
	}
	cards := []*pivcard.Card{pivcard.StartCard(t, pivcard.Config{Serial: 43000004, CA: ca}, 0), pivcard.StartCard(t, pivcard.Config{Serial: 43000005, CA: ca}, 1)}
	opts := hsm.Options{AttestationRoots: ca.CertPool(), AttestationRootsName: yubikey.Fingerprint(ca.Certificate()),
		Getenv: func(k string) string { return map[string]string{yubikey.WaitEnv: "0"}[k] }}
	for i, c := range cards {
		o := &officer{machine: newMachine(t, fmt.Sprintf("officer%d", i+4), nil)}
		pin := filepath.Join(o.dir, "yubikey.pin")
		if err := os.WriteFile(pin, []byte(ykPIN+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		uri := fmt.Sprintf("yubikey:serial=%d;slot=9c?pin-source=%s", c.Serial(), pin)
		generateYubiKey(t, opts, c, uri, []hsm.Algorithm{hsm.ECDSAP256, hsm.Ed25519}[i])
		r.exportKey(t, o, uri, o.name+".key.json")
		r.officers = append(r.officers, o)
	}
	for _, obj := range [][2]string{{"tagging", "targets"}, {"tagging", "targets-2"}, {"online", "snapshot"}, {"online", "timestamp"}} {
		r.ok(t, r.custodian, "key", "generate", tok.URI(obj[0], obj[1]))
	}
	r.custodian.env = append(r.custodian.env, "TOK_TAGGING="+tok.URI("tagging", "targets"), "TOK_TAGGING2="+tok.URI("tagging", "targets-2"),
		"TOK_SNAPSHOT="+tok.URI("online", "snapshot"), "TOK_TIMESTAMP="+tok.URI("online", "timestamp"))
	return r
}

// generateYubiKey sets a new virtual YubiKey up (PIN, management key) and
// generates a key in it, as rootkeeper yubikey setup and key generate do.
func generateYubiKey(t *testing.T, opts hsm.Options, c *pivcard.Card, uri string, alg hsm.Algorithm) {
	ctx := context.Background()
	if _, err := yubikey.Setup(ctx, opts, yubikey.SetupOptions{Serial: c.Serial(),
		NewPIN:  func(context.Context, *yubikey.DeviceInfo) ([]byte, error) { return []byte(ykPIN), nil },
		Confirm: func(string) (bool, error) { return true, nil }}); err != nil {
		t.Fatal(err)
	}
	kr := hsm.NewKeyring(opts)
	defer kr.Close()
	info, err := kr.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: alg})
	if err != nil || !info.Evidence.HardwareBorn() {
		t.Fatalf("generate %s: %v", uri, err)
	}
}

func (r *remoteRig) env(name string) string {
	for _, kv := range r.custodian.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// plan writes a bootstrap plan on the custodian's machine: root
// threshold-of the officers' exported keys, the other roles on the
// custodian's tokens.
func (r *remoteRig) plan(t *testing.T, name string, threshold int, who ...*officer) {
	var files []string
	for _, o := range who {
		files = append(files, fmt.Sprintf("%q", "file:"+o.export))
	}
	plan := fmt.Sprintf(`version: 1
ceremony: bootstrap
repository: remote.example
roles:
  root: { threshold: %d, expires: 365d, keys: [ %s ] }
  targets: { threshold: 1, expires: 90d, keys: [ %q ] }
  snapshot: { threshold: 1, expires: 21d, keys: [ %q ] }
  timestamp: { threshold: 1, expires: 7d, keys: [ %q ] }
`, threshold, strings.Join(files, ", "), r.env("TOK_TAGGING"), r.env("TOK_SNAPSHOT"), r.env("TOK_TIMESTAMP"))
	if err := os.WriteFile(filepath.Join(r.custodian.dir, name), []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
}

// clientsOf are go-tuf and tuf-js clients of the repository in dir,
// trusting its root v1, that keep their state across the test.
func clientsOf(t *testing.T, dir string) []clients.Client {
	mdURL, tgURL := clients.Serve(t, dir)
	return clients.All(t, clients.Config{TrustedRoot: readFile(t, filepath.Join(dir, "metadata/1.root.json")), CacheDir: t.TempDir(), MetadataURL: mdURL, TargetsURL: tgURL})
}

var signedHere = regexp.MustCompile(`(?m)^  signed here by ([0-9a-f]{12})$`)

// TestRemoteCeremonies: a 3-of-5 root bootstrapped from five exported
// keys and signed remotely; a 3-of-5 root rotation (officer 1's key
// replaced by a new one, exported too); a mixed change (the new targets
// key signs here, root through the bundle); the yearly re-signing of root
// by resign --out; a 2-of-3 bootstrap of a second repository; and every
// refusal of apply, each leaving the repository byte-identical with one
// error.
func TestRemoteCeremonies(t *testing.T) {
	r := newRemote(t)
	o := r.officers
	cu := r.custodian
	repo := filepath.Join(cu.dir, "repo")
	hello := []byte("hello from five officers\n")
	if err := os.WriteFile(filepath.Join(cu.dir, "hello.txt"), hello, 0o644); err != nil {
		t.Fatal(err)
	}
	targets := map[string][]byte{"hello.txt": hello}

	// Bootstrap 3 of 5: the custodian has no root key; the tagging key
	// signs targets at once.
	r.plan(t, "plan.yaml", 3, o...)
	out := r.ok(t, cu, "init", "--plan", "plan.yaml", "--repo", "repo", "--out", "boot.json", "--yes")
	if m := signedHere.FindAllStringSubmatch(out, -1); len(m) != 1 || !strings.Contains(out, "still needed: root v1 needs 3 more signatures") {
		t.Fatalf("init --out: want one signature made here (targets) and root v1 waiting for 3:\n%s", out)
	}
	r.ok(t, cu, append([]string{"apply", "--repo", "repo", "--yes"}, r.collect(t, "boot.json", o...)...)...)
	r.ok(t, cu, "targets", "add", "--repo", "repo", "hello.txt")
	cs := clientsOf(t, repo)
	updateAll(t, "after the remote bootstrap", cs, targets, 1)

	// Root rotation, 3 of 5: officer 1 replaces the key with a new one on
	// the same token; all five sign (old keys count for root v1, the
	// new set for root v2).
	oldID := o[0].keyID
	env1 := strings.Replace(o[0].uri, "object=root", "object=root-2", 1)
	r.ok(t, o[0].machine, "key", "generate", env1)
	r.exportKey(t, o[0], env1, "officer1-new.key.json")
	out = r.ok(t, cu, "rotate", "--repo", "repo", "--role", "root", "--add", "file:officer1-new.key.json", "--remove", oldID, "--out", "rotate.json", "--yes")
	if signedHere.MatchString(out) {
		t.Fatalf("the custodian's machine signed root, but it has no root key:\n%s", out)
	}
	r.ok(t, cu, append([]string{"apply", "--repo", "repo", "--yes"}, r.collect(t, "rotate.json", o...)...)...)
	updateAll(t, "after the 3-of-5 root rotation", cs, targets, 2)

	// Mixed: the targets key rotated; the new tagging key signs targets
	// here, three officers sign root, the online keys snapshot and
	// timestamp at apply.
	out = r.ok(t, cu, "rotate", "--repo", "repo", "--role", "targets", "--add", r.env("TOK_TAGGING2"), "--remove", "pkcs11:token=tagging;object=targets", "--out", "mixed.json", "--yes")
	if m := signedHere.FindAllStringSubmatch(out, -1); len(m) != 1 || !strings.Contains(out, "roles: root, targets") {
		t.Fatalf("mixed: want root and targets in the bundle, targets signed here:\n%s", out)
	}
	r.ok(t, cu, append([]string{"apply", "--repo", "repo", "--yes"}, r.collect(t, "mixed.json", o[1], o[3], o[4])...)...)
	hello2 := []byte("signed by the new tagging key\n")
	os.WriteFile(filepath.Join(cu.dir, "hello2.txt"), hello2, 0o644)
	r.ok(t, cu, "targets", "add", "--repo", "repo", "hello2.txt")
	targets["hello2.txt"] = hello2
	updateAll(t, "after the mixed rotation", cs, targets, 3)

	// A second repository: 2 of 3 officers' exported keys, signed remotely.
	repo2 := filepath.Join(cu.dir, "repo2")
	r.plan(t, "plan2.yaml", 2, o[0], o[2], o[4])
	r.ok(t, cu, "init", "--plan", "plan2.yaml", "--repo", "repo2", "--out", "boot2.json", "--yes")
	r.refused(t, repo2, `boot2.json.*not signed enough yet|bundle [0-9a-f]{12} is not signed enough yet`, "apply", "--repo", "repo2", "boot2.json", "--yes")
	r.ok(t, cu, append([]string{"apply", "--repo", "repo2", "--yes"}, r.collect(t, "boot2.json", o[2], o[4])...)...)
	r.ok(t, cu, "targets", "add", "--repo", "repo2", "hello.txt")
	updateAll(t, "the 2-of-3 bootstrap", clientsOf(t, repo2), map[string][]byte{"hello.txt": hello}, 1)

	t.Run("refusals", func(t *testing.T) { remoteRefusals(t, r, repo, cs, targets) })
}

// remoteRefusals: apply refuses, each time with one error and the
// repository untouched: a bundle not signed enough (naming who is
// missing), an expired one, another repository's, a payload byte changed,
// a signature by a key root does not trust, one key twice, a stale bundle;
// then the yearly re-signing of root (resign --out) goes through.
func remoteRefusals(t *testing.T, r *remoteRig, repo string, cs []clients.Client, targets map[string][]byte) {
	o, cu := r.officers, r.custodian
	r.ok(t, cu, "resign", "--repo", "repo", "--role", "root", "--out", "yearly.json")
	stderr := r.refused(t, repo, `bundle [0-9a-f]{12} is not signed enough yet; nothing was written\nrootkeeper:   root v4 needs 3 more signatures by root v4's keys: `,
		"apply", "--repo", "repo", "yearly.json", "--yes")
	for _, x := range o { // each missing key with its device
		if !regexp.MustCompile(x.keyID[:12] + ` \((token officer-\d \(serial [0-9a-f]+\)|YubiKey 4300000\d)\)`).MatchString(stderr) {
			t.Errorf("the missing signatures do not name %s (%s) and its device:\n%s", x.keyID[:12], x.name, stderr)
		}
	}

	r.ok(t, cu, "resign", "--repo", "repo", "--role", "root", "--out", "short.json", "--bundle-expires", "1s")
	time.Sleep(1500 * time.Millisecond)
	r.refused(t, repo, `signing bundle short.json: expired at `, "apply", "--repo", "repo", "short.json", "--yes")

	copies := r.collect(t, "yearly.json", o[1], o[2], o[3])
	yearly := append([]string{"apply", "--repo", "repo", "--yes"}, copies...)
	r.refused(t, filepath.Join(cu.dir, "repo2"), `bundle [0-9a-f]{12} was made for another repository`, append([]string{"apply", "--repo", "repo2", "--yes"}, copies...)...)

	editCopy(t, cu, copies[0], "changed.json", func(role map[string]any) { flipExpiry(t, role, false) })
	r.refused(t, repo, `signing bundle changed.json: the payload of root has SHA-256 [0-9a-f]{12}, not the [0-9a-f]{12} recorded with it`, "apply", "--repo", "repo", "changed.json", copies[1], copies[2], "--yes")
	editCopy(t, cu, copies[0], "rehashed.json", func(role map[string]any) { flipExpiry(t, role, true) })
	r.refused(t, repo, `the signature of root by key [0-9a-f]{12} does not verify over the payload`, "apply", "--repo", "repo", "rehashed.json", copies[1], copies[2], "--yes")

	editCopy(t, cu, copies[0], "untrusted.json", func(role map[string]any) { addUntrusted(t, role) })
	r.refused(t, repo, `signing bundle untrusted.json: the signature of root by key [0-9a-f]{12} is by a key that root does not trust`, "apply", "--repo", "repo", "untrusted.json", "--yes")

	// One officer's signature in two copies, and listed twice in one.
	editCopy(t, cu, copies[0], "twice.json", func(role map[string]any) {
		sigs := role["signatures"].([]any)
		role["signatures"] = append(sigs, sigs[0])
	})
	r.refused(t, repo, `root v4 needs 2 more signatures by root v4's keys`, "apply", "--repo", "repo", copies[0], copies[0], "twice.json", "--yes")

	// The repository moves on (a target added) before the bundle comes back.
	stale := filepath.Join(r.custodian.dir, "repo-stale")
	if out, err := exec.Command("cp", "-a", repo, stale).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	os.WriteFile(filepath.Join(cu.dir, "late.txt"), []byte("late\n"), 0o644)
	r.ok(t, cu, "targets", "add", "--repo", "repo-stale", "late.txt")
	r.refused(t, stale, `the repository moved on since bundle [0-9a-f]{12} was made: metadata/.* changed`, append([]string{"apply", "--repo", "repo-stale", "--yes"}, copies...)...)

	// The yearly re-signing of root, signed by three officers, applied.
	r.ok(t, cu, yearly...)
	updateAll(t, "after the yearly remote re-signing of root", cs, targets, 4)
	checkRemoteTranscript(t, r, "repo", 4)
}

// checkRemoteTranscript: after a life of remote ceremonies the transcript
// verifies, every root version is accounted for, and each root version
// the officers signed records their signatures as come through a bundle.
func checkRemoteTranscript(t *testing.T, r *remoteRig, repo string, roots int) {
	t.Helper()
	out := r.ok(t, r.custodian, "transcript", "verify", "--repo", repo, "--json")
	var rep struct {
		OK bool `json:"ok"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK {
		t.Fatalf("transcript verify after the remote ceremonies: %v\n%s", err, out)
	}
	data := readFile(t, filepath.Join(r.custodian.dir, repo, "transcript.jsonl"))
	for v := 1; v <= roots; v++ {
		re := regexp.MustCompile(fmt.Sprintf(`"path":"metadata/%d\.root\.json"[^}]*"signatures":\[\{[^]]*"via":"bundle:`, v))
		if !re.Match(data) {
			t.Errorf("the transcript does not record root v%d's signatures as come through a bundle", v)
		}
	}
}

// editCopy writes to as a copy of the bundle name with its first role
// (root) edited by edit, on m.
func editCopy(t *testing.T, m *machine, name, as string, edit func(role map[string]any)) {
	t.Helper()
	var b map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(m.dir, name)), &b); err != nil {
		t.Fatal(err)
	}
	edit(b["roles"].([]any)[0].(map[string]any))
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, as), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// flipExpiry changes one digit of the payload's expiry (still a valid
// root), recomputing the recorded hash with rehash.
func flipExpiry(t *testing.T, role map[string]any, rehash bool) {
	payload, err := base64.StdEncoding.DecodeString(role["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(payload, []byte(`"expires":"`)) + len(`"expires":"`) + 18
	if payload[i] == '0' {
		payload[i] = '1'
	} else {
		payload[i] = '0'
	}
	role["payload"] = base64.StdEncoding.EncodeToString(payload)
	if rehash {
		sum := sha256.Sum256(payload)
		role["payload_sha256"] = hex.EncodeToString(sum[:])
	}
}

// addUntrusted adds a valid signature over the payload by a new key that
// root does not trust.
func addUntrusted(t *testing.T, role map[string]any) {
	payload, err := base64.StdEncoding.DecodeString(role["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := roles.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.SignPayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	role["signatures"] = append(role["signatures"].([]any), map[string]any{"keyid": s.KeyID(), "sig": hex.EncodeToString(sig)})
}
