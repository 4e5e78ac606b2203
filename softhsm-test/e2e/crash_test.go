package e2e

// The kill -9 campaign (docs/reliability.md): every repository-changing
// command, run as the real binary against SoftHSM, killed with SIGKILL
// right before each write, fsync, rename, removal and mkdir the store
// makes (the crashtest build's fault hook: strace's own counters are per
// thread, and Go moves goroutines between threads), and failed with
// ENOSPC at each write and fsync. After each: the repository is either
// byte-identical to before or, once the next command has run, exactly at
// the state of the uninterrupted command; the next command succeeds, no
// temporary file or journal is left, and go-tuf's client accepts it.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// crashCmd is one repository-changing command; "DIR" in args is the
// repository.
type crashCmd struct {
	op   string // its operation in the transcript
	args []string
}

// crashRig is a base repository, the binary built with the fault hook,
// and the commands of the campaign.
type crashRig struct {
	env   *softhsm.Env
	bin   string
	work  string
	base  string
	keep  []byte // keep.txt, which every state of the campaign serves
	cmds  []crashCmd
	runs  int
	refs  map[string]*crashRef
	cache string
}

// crashRef is what the uninterrupted command leaves.
type crashRef struct {
	files []string // every file of the repository but the lock
}

// newCrashRig makes the base repository: root, targets, snapshot and
// timestamp (consistent snapshots), a delegation "releases" to alice, the
// targets keep.txt and app.txt and releases/r.txt; and spare keys for
// rotate (timestamp-2), revoke (alice-2) and delegate add (team).
func newCrashRig(t *testing.T) *crashRig {
	env := softhsm.NewTokens(t, "root", "tagging", "online")
	r := &crashRig{env: env, bin: buildCrashtest(t), work: t.TempDir(), keep: []byte("served in every state\n"), refs: map[string]*crashRef{}}
	s, _ := newSession(t)
	ctx := context.Background()
	u := func(tok, obj string) string { return env.URI(tok, obj) }
	for _, k := range [][2]string{{"root", "root"}, {"tagging", "targets"}, {"tagging", "alice"}, {"tagging", "alice-2"}, {"tagging", "team"},
		{"online", "snapshot"}, {"online", "timestamp"}, {"online", "timestamp-2"}} {
		generate(t, s, u(k[0], k[1]), hsm.ECDSAP256)
	}
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "crash"}
	plan.Roles.Root = role(1, "365d", u("root", "root"))
	plan.Roles.Targets = role(1, "90d", u("tagging", "targets"))
	plan.Roles.Snapshot = role(1, "21d", u("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", u("online", "timestamp"))
	plan.Delegations = []ceremony.DelegationPlan{{Name: "releases", Threshold: 1, Keys: []string{u("tagging", "alice")}, Paths: []string{"releases/*"}}}
	r.base = filepath.Join(r.work, "base")
	if _, err := s.Init(ctx, plan, r.base); err != nil {
		t.Fatal(err)
	}
	for role, in := range map[string][]ceremony.TargetInput{
		"targets":  {{Name: "keep.txt", Data: r.keep}, {Name: "app.txt", Data: []byte("app 1.0\n")}},
		"releases": {{Name: "releases/r.txt", Data: []byte("release\n")}},
	} {
		if _, err := s.AddTargets(ctx, r.base, role, in); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(r.work, "plan.yaml")
	writeCrashPlan(t, planFile, u)
	newFile := filepath.Join(r.work, "new.txt")
	if err := os.WriteFile(newFile, []byte("a new target\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.cmds = []crashCmd{
		{"publish", []string{"publish", "--repo", "DIR"}},
		{"targets-add", []string{"targets", "add", "--repo", "DIR", "--prefix", "new", newFile}},
		{"targets-remove", []string{"targets", "remove", "--repo", "DIR", "app.txt"}},
		{"resign", []string{"resign", "--repo", "DIR", "--role", "targets"}},
		{"rotate", []string{"rotate", "--repo", "DIR", "--role", "timestamp", "--add", u("online", "timestamp-2"), "--remove", u("online", "timestamp"), "--yes"}},
		{"revoke", []string{"revoke", "--repo", "DIR", "--key", u("tagging", "alice"), "--reason", "campaign", "--add", "releases=" + u("tagging", "alice-2"), "--yes"}},
		{"delegate-add", []string{"delegate", "add", "--repo", "DIR", "--role", "team", "--key", u("tagging", "team"), "--paths", "team/*", "--yes"}},
		{"init", []string{"init", "--plan", planFile, "--repo", "DIR", "--yes"}},
	}
	return r
}

func writeCrashPlan(t *testing.T, path string, u func(tok, obj string) string) {
	t.Helper()
	plan := fmt.Sprintf(`version: 1
ceremony: bootstrap
repository: crash-init
roles:
  root: { threshold: 1, expires: 365d, keys: [ %q ] }
  targets: { threshold: 1, expires: 90d, keys: [ %q ] }
  snapshot: { threshold: 1, expires: 21d, keys: [ %q ] }
  timestamp: { threshold: 1, expires: 7d, keys: [ %q ] }
delegations:
  - { name: releases, threshold: 1, keys: [ %q ], paths: [ "releases/*" ] }
`, u("root", "root"), u("tagging", "targets"), u("online", "snapshot"), u("online", "timestamp"), u("tagging", "alice"))
	if err := os.WriteFile(path, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildCrashtest builds rootkeeper with the fault hook.
func buildCrashtest(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rootkeeper-crashtest")
	cmd := exec.Command("go", "build", "-tags", "crashtest", "-o", bin, "github.com/rootkeeper/rootkeeper/cmd/rootkeeper")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// fresh returns a new repository for a run of c: a copy of the base, or
// for init a directory that does not exist yet.
func (r *crashRig) fresh(t *testing.T, c crashCmd) string {
	t.Helper()
	r.runs++
	dir := filepath.Join(r.work, fmt.Sprintf("run-%04d", r.runs))
	if c.op == "init" {
		return dir
	}
	if out, err := exec.Command("cp", "-a", r.base, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dir
}

// crashRun is the outcome of one run of the binary.
type crashRun struct {
	stdout, stderr string
	code           int
	killed         bool
	tokenLost      bool // a SoftHSM token of the run was damaged (runKilledAfter)
}

// run runs args (DIR replaced by dir) with extra environment and,
// optionally, under a prefix (strace, setpriv).
func (r *crashRig) run(t *testing.T, dir string, args []string, env []string, prefix ...string) crashRun {
	t.Helper()
	full := append(append([]string{}, prefix...), r.bin)
	for _, a := range args {
		full = append(full, strings.ReplaceAll(a, "DIR", dir))
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = append(append(r.env.Environ(), "ROOTKEEPER_PIN="), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := crashRun{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			res.killed = true
		}
		res.killed = res.killed || res.code == 128+int(syscall.SIGKILL) // through strace or setpriv
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

// hashTree hashes every file of dir but the lock file; "absent" when dir
// does not exist or holds nothing else (a run of init that wrote nothing).
func hashTree(t *testing.T, dir string) string {
	t.Helper()
	files := listTree(t, dir)
	if len(files) == 0 {
		return "absent"
	}
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		lines = append(lines, f+" "+hex.EncodeToString(h[:]))
	}
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}

// listTree lists the files under dir but the lock file, sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) && p == dir {
			return fs.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != ceremony.LockFile {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

var leftover = regexp.MustCompile(`(^|/)\.[^/]+\.tmp-[^/]*$|(^|/)\.rootkeeper-journal`)

// reference runs c uninterrupted and records what it leaves.
func (r *crashRig) reference(t *testing.T, c crashCmd) *crashRef {
	t.Helper()
	if ref := r.refs[c.op]; ref != nil {
		return ref
	}
	dir := r.fresh(t, c)
	if res := r.run(t, dir, c.args, nil); res.code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", c.op, res.code, res.stdout, res.stderr)
	}
	ref := &crashRef{files: listTree(t, dir)}
	r.refs[c.op] = ref
	return ref
}

// settle brings dir to a state after a killed or failed run, as the next
// command does first (rootkeeper repair runs the same recovery, and needs
// no device), and says which: "before" (byte-identical to before) or
// "after" (exactly what the uninterrupted command leaves). Anything else
// fails the test.
func (r *crashRig) settle(t *testing.T, c crashCmd, dir, before, what string) string {
	t.Helper()
	if hashTree(t, dir) != "absent" {
		if res := r.run(t, dir, []string{"repair", "--repo", "DIR"}, nil); res.code != 0 {
			t.Fatalf("%s: repair after the run: exit %d\n%s%s", what, res.code, res.stdout, res.stderr)
		}
	}
	files := listTree(t, dir)
	for _, f := range files {
		if leftover.MatchString(f) {
			t.Errorf("%s: left behind after recovery: %s", what, f)
		}
	}
	if hashTree(t, dir) == before {
		return "before"
	}
	if err := r.isAfter(dir, c, files); err != nil {
		t.Errorf("%s: CORRUPT: neither before nor after: %v\nfiles: %v", what, err, files)
		return "corrupt"
	}
	return "after"
}

// isAfter checks that dir is what the uninterrupted command leaves: the
// same files, the transcript's last entry is the command's with the exact
// bytes of every file it names, and a client would accept it.
func (r *crashRig) isAfter(dir string, c crashCmd, files []string) error {
	ref := r.refs[c.op]
	if strings.Join(files, " ") != strings.Join(ref.files, " ") {
		return fmt.Errorf("other files than the uninterrupted %s leaves (%d, want %d)", c.op, len(files), len(ref.files))
	}
	data, err := os.ReadFile(filepath.Join(dir, ceremony.TranscriptFile))
	if err != nil {
		return err
	}
	entries, err := ceremony.ParseTranscript(data)
	if err != nil {
		return err
	}
	e := entries[len(entries)-1]
	if e.Operation != c.op {
		return fmt.Errorf("the transcript's last entry is %q", e.Operation)
	}
	for p, sum := range e.Files {
		if p == ceremony.TranscriptFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, p))
		h := sha256.Sum256(b)
		if err != nil || hex.EncodeToString(h[:]) != sum {
			return fmt.Errorf("%s is not what the transcript recorded", p)
		}
	}
	rep, err := ceremony.Verify(dir, nil, time.Now())
	if err != nil || !rep.OK {
		return fmt.Errorf("verify: %v %+v", err, rep)
	}
	return nil
}

// next runs the next command on dir (publish; after an init that wrote
// nothing, init again) and checks that it succeeds, leaves nothing
// behind, and that go-tuf's client accepts the result and fetches
// keep.txt. It reports whether all of that held.
func (r *crashRig) next(t *testing.T, c crashCmd, dir, state, what string) bool {
	t.Helper()
	args := []string{"publish", "--repo", "DIR"}
	if c.op == "init" && state == "before" {
		args = c.args
	}
	if res := r.run(t, dir, args, nil); res.code != 0 {
		t.Errorf("%s: RERUN FAILED: %s exit %d\n%s%s", what, args[0], res.code, res.stdout, res.stderr)
		return false
	}
	ok := true
	for _, f := range listTree(t, dir) {
		if leftover.MatchString(f) {
			t.Errorf("%s: left behind after the next command: %s", what, f)
			ok = false
		}
	}
	return r.acceptedByGoTUF(t, c, dir, what) && ok
}

// acceptedByGoTUF has go-tuf's client, from 1.root.json, update from dir
// and fetch keep.txt (a repository init made has no targets).
func (r *crashRig) acceptedByGoTUF(t *testing.T, c crashCmd, dir, what string) bool {
	t.Helper()
	metadataURL, targetsURL, stop := clients.ServeDir(dir)
	defer stop()
	root, err := os.ReadFile(filepath.Join(dir, "metadata/1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	cl := clients.NewGoTUF(t, clients.Config{TrustedRoot: root, MetadataURL: metadataURL, TargetsURL: targetsURL})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := map[string][]byte{"keep.txt": r.keep}
	if c.op == "init" {
		want = nil
	}
	if err := clients.Verify(ctx, cl, want); err != nil {
		t.Errorf("%s: go-tuf refuses the repository: %v", what, err)
		return false
	}
	return true
}

var faultLine = regexp.MustCompile(`rootkeeper-test-fault: \w+ before (\w+) #\d+`)

// tally counts outcomes by command.
type tally map[string]map[string]int

func (ta tally) add(op, what string) {
	if ta[op] == nil {
		ta[op] = map[string]int{}
	}
	ta[op][what]++
}

func (ta tally) log(t *testing.T, cols ...string) {
	t.Helper()
	ops := make([]string, 0, len(ta))
	for op := range ta {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s", "command")
	for _, c := range cols {
		fmt.Fprintf(&b, " %8s", c)
	}
	for _, op := range ops {
		fmt.Fprintf(&b, "\n%-16s", op)
		for _, c := range cols {
			fmt.Fprintf(&b, " %8d", ta[op][c])
		}
	}
	t.Log("\n" + b.String())
}

// TestKillAtEveryWritePoint kills each command right before each of its
// store operations in turn, until a run gets past the last one.
func TestKillAtEveryWritePoint(t *testing.T) {
	r := newCrashRig(t)
	ta := tally{}
	for _, c := range r.cmds {
		r.reference(t, c)
		for n := 1; ; n++ {
			dir := r.fresh(t, c)
			before := hashTree(t, dir)
			res := r.run(t, dir, c.args, []string{fmt.Sprintf("ROOTKEEPER_TEST_FAULT=kill:any:%d", n)})
			if !res.killed {
				if res.code != 0 || n == 1 {
					t.Fatalf("%s with no kill point left: exit %d\n%s", c.op, res.code, res.stderr)
				}
				break
			}
			m := faultLine.FindStringSubmatch(res.stderr)
			if m == nil {
				t.Fatalf("%s killed without the fault hook: %s", c.op, res.stderr)
			}
			what := fmt.Sprintf("%s killed before store operation #%d (%s)", c.op, n, m[1])
			ta.add(c.op, m[1])
			state := r.settle(t, c, dir, before, what)
			ta.add(c.op, state)
			r.next(t, c, dir, state, what)
			os.RemoveAll(dir)
		}
	}
	ta.log(t, "write", "fsync", "rename", "remove", "mkdir", "before", "after", "corrupt")
	for _, c := range r.cmds {
		n := ta[c.op]
		if n["rename"] == 0 || n["fsync"] == 0 || n["before"] == 0 || n["after"] == 0 {
			t.Errorf("%s: the campaign missed a kind of point or an outcome: %v", c.op, n)
		}
	}
}

// TestDiskFullAtEveryWrite fails each write and each fsync of each
// command with ENOSPC in turn. The exit status tells the truth: 1 with
// "nothing was written" and the repository byte-identical; 1 with "not
// published" and the previous timestamp still in place (the next command
// finishes the change); or 0, the change visible, perhaps with a warning.
func TestDiskFullAtEveryWrite(t *testing.T) {
	r := newCrashRig(t)
	ta := tally{}
	baseTS, _ := os.ReadFile(filepath.Join(r.base, "metadata/timestamp.json"))
	for _, c := range r.cmds {
		r.reference(t, c)
		for _, kind := range []string{"write", "fsync"} {
			for n := 1; ; n++ {
				dir := r.fresh(t, c)
				before := hashTree(t, dir)
				res := r.run(t, dir, c.args, []string{fmt.Sprintf("ROOTKEEPER_TEST_FAULT=enospc:%s:%d", kind, n)})
				if !strings.Contains(res.stderr, "rootkeeper-test-fault:") {
					if res.code != 0 {
						t.Fatalf("%s: exit %d\n%s", c.op, res.code, res.stderr)
					}
					break
				}
				what := fmt.Sprintf("%s with ENOSPC at %s #%d", c.op, kind, n)
				visible := publishedChange(r.base, dir, baseTS, c.op == "init")
				verdict := diskFullVerdict(res, visible, hashTree(t, dir) == before)
				if verdict == "" {
					t.Errorf("%s: the exit status does not tell the truth: exit %d, change visible %v\n%s", what, res.code, visible, res.stderr)
					continue
				}
				ta.add(c.op, verdict)
				state := r.settle(t, c, dir, before, what)
				if want := map[string]string{"nothing-written": "before", "not-published": "after", "done": "after", "done-warned": "after"}[verdict]; state != want {
					t.Errorf("%s: reported %s, but the repository settled %s", what, verdict, state)
				}
				r.next(t, c, dir, state, what)
				os.RemoveAll(dir)
			}
		}
	}
	ta.log(t, "nothing-written", "not-published", "done", "done-warned")
}

// publishedChange reports whether clients of dir see a change: a new
// timestamp.json or a new root version.
func publishedChange(base, dir string, baseTS []byte, init bool) bool {
	ts, err := os.ReadFile(filepath.Join(dir, "metadata/timestamp.json"))
	roots, _ := filepath.Glob(filepath.Join(dir, "metadata/*.root.json"))
	if init {
		return err == nil || len(roots) > 0
	}
	baseRoots, _ := filepath.Glob(filepath.Join(base, "metadata/*.root.json"))
	return (err == nil && !bytes.Equal(ts, baseTS)) || len(roots) > len(baseRoots)
}

// diskFullVerdict names what a run that met ENOSPC reported, or "" if
// what it reported is not what happened.
func diskFullVerdict(res crashRun, visible, identical bool) string {
	timestampUnchanged := !visible
	errLine := strings.Contains(res.stderr, "rootkeeper: error:")
	switch {
	case res.code == 1 && errLine && strings.Contains(res.stderr, "; nothing was written") && identical:
		if strings.Contains(res.stderr, "no space left on device") && !strings.Contains(res.stderr, "hint: free space") {
			return ""
		}
		return "nothing-written"
	case res.code == 1 && errLine && strings.Contains(res.stderr, "not published: clients still see the previous state") && timestampUnchanged:
		return "not-published"
	case res.code == 0 && !errLine && !timestampUnchanged && strings.Contains(res.stderr, "rootkeeper: warning: the "):
		return "done-warned"
	case res.code == 0 && !errLine && !timestampUnchanged:
		return "done"
	}
	return ""
}

// tokenDir finds the SoftHSM directory of the token labeled label.
func tokenDir(t *testing.T, env *softhsm.Env, label string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(env.Dir, "*"))
	padded := []byte(label + strings.Repeat(" ", 32-len(label)))
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "token.object")); err == nil && bytes.Contains(b, padded) {
			return d
		}
	}
	t.Fatalf("no token directory for %s in %s", label, env.Dir)
	return ""
}

// TestTokenRemovedMidRun: targets add signs targets with the tagging
// token, then, while it reads the online token's PIN (a FIFO here, so the
// test knows when), the online token's directory goes away. The run fails
// with one clear error and writes nothing; with the token back, the next
// command succeeds.
func TestTokenRemovedMidRun(t *testing.T) {
	r := newCrashRig(t)
	c := r.cmds[1] // targets add
	dir := r.fresh(t, c)
	fifo := filepath.Join(r.work, "online.pin")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	polPath := filepath.Join(dir, ceremony.PolicyFile)
	pol, _ := os.ReadFile(polPath)
	var lines []string
	for _, l := range strings.Split(string(pol), "\n") {
		if strings.Contains(l, "token=online") {
			l = strings.ReplaceAll(l, r.env.PINFile, fifo)
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(polPath, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	before := hashTree(t, dir)
	online := tokenDir(t, r.env, "online")
	done := make(chan crashRun, 1)
	go func() { done <- r.run(t, dir, c.args, nil) }()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until rootkeeper reads the online PIN
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(online, online+".removed"); err != nil {
		t.Fatal(err)
	}
	f.WriteString(softhsm.PIN + "\n")
	f.Close()
	res := <-done
	os.Rename(online+".removed", online)
	t.Logf("exit %d\n%s", res.code, res.stderr)
	switch {
	case res.code == 1 && strings.Contains(res.stderr, "rootkeeper: error:") && strings.Contains(res.stderr, "rootkeeper: hint:"):
		if got := hashTree(t, dir); got != before {
			t.Errorf("the run failed but the repository changed")
		}
		if !strings.Contains(res.stderr, "signing targets with ") {
			t.Errorf("the token went away before the first signature, not mid-run")
		}
	default:
		t.Fatalf("exit %d: the token's removal was not noticed\n%s", res.code, res.stderr)
	}
	if err := os.WriteFile(polPath, pol, 0o644); err != nil {
		t.Fatal(err)
	}
	r.next(t, c, dir, "before", "after the token came back")
}

// TestReadOnlyDirectory: a repository whose directory or metadata/ the
// user cannot write is refused before any device is opened, with nothing
// written; a read-only targets/ that targets add must write into is met
// after the journal is committed: "not published", the previous timestamp
// in place, and once targets/ is writable again the next command finishes
// the change.
func TestReadOnlyDirectory(t *testing.T) {
	r := newCrashRig(t)
	c := r.cmds[1] // targets add
	r.reference(t, c)
	var prefix []string
	if os.Geteuid() == 0 { // root obeys file modes once its override capabilities are gone
		caps := "-dac_override,-dac_read_search,-fowner"
		prefix = []string{"setpriv", "--bounding-set=" + caps, "--inh-caps=" + caps}
	}
	for _, ro := range []string{".", "metadata", "targets/new"} {
		dir := r.fresh(t, c)
		os.MkdirAll(filepath.Join(dir, "targets/new"), 0o755)
		before := hashTree(t, dir)
		baseTS, _ := os.ReadFile(filepath.Join(dir, "metadata/timestamp.json"))
		os.Chmod(filepath.Join(dir, ro), 0o555)
		res := r.run(t, dir, c.args, nil, prefix...)
		os.Chmod(filepath.Join(dir, ro), 0o755)
		what := "read-only " + ro
		verdict := diskFullVerdict(res, publishedChange(r.base, dir, baseTS, false), hashTree(t, dir) == before)
		t.Logf("%s: exit %d, %s\n%s", what, res.code, verdict, res.stderr)
		if !strings.Contains(res.stderr, "permission denied") || !strings.Contains(res.stderr, "hint: the directory is not writable by this user") {
			t.Errorf("%s: the error does not say what is wrong and what to do", what)
		}
		want := map[string]string{".": "nothing-written", "metadata": "nothing-written", "targets/new": "not-published"}[ro]
		if verdict != want {
			t.Fatalf("%s: reported %q, want %q", what, verdict, want)
		}
		if opened := strings.Contains(res.stderr, "opening pkcs11"); opened != (ro == "targets/new") {
			t.Errorf("%s: a device opened: %v", what, opened)
		}
		state := r.settle(t, c, dir, before, what)
		if state != map[string]string{".": "before", "metadata": "before", "targets/new": "after"}[ro] {
			t.Errorf("%s: settled %s", what, state)
		}
		r.next(t, c, dir, state, what)
	}
}

// slowDisk runs a command under strace with every fsync delayed, as on a
// slow or busy disk.
var slowDisk = []string{"strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync", "-e", "inject=fsync,fdatasync:delay_enter=20ms"}

// runKilledAfter runs args like run, and kills the process group (the
// command and, on the slow disk, strace) with SIGKILL after delay.
func (r *crashRig) runKilledAfter(t *testing.T, dir string, args []string, delay time.Duration, prefix []string) crashRun {
	t.Helper()
	full := append(append([]string{}, prefix...), r.bin)
	for _, a := range args {
		full = append(full, strings.ReplaceAll(a, "DIR", dir))
	}
	// SoftHSM's file store truncates and rewrites token.object on every
	// login: a SIGKILL between the two loses the token. The killed run
	// gets a copy of the tokens, so that the emulator's own damage (a real
	// device keeps its state on the device) is counted apart and does not
	// spoil the runs after it.
	scratch := filepath.Join(r.work, "tokens-scratch")
	os.RemoveAll(scratch)
	if out, err := exec.Command("cp", "-a", r.env.Dir, scratch).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	conf := scratch + ".conf"
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+scratch+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = append(r.env.Environ(), "ROOTKEEPER_PIN=", "SOFTHSM2_CONF="+conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(delay, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	timer.Stop()
	res := crashRun{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
		ws, _ := ee.Sys().(syscall.WaitStatus)
		res.killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	res.tokenLost = tokensDamaged(r.env.Dir, scratch)
	return res
}

// tokensDamaged reports whether a token.object under scratch lost bytes
// compared with the same file under pristine.
func tokensDamaged(pristine, scratch string) bool {
	objs, _ := filepath.Glob(filepath.Join(pristine, "*", "token.object"))
	for _, o := range objs {
		rel, _ := filepath.Rel(pristine, o)
		a, _ := os.Stat(o)
		b, err := os.Stat(filepath.Join(scratch, rel))
		if err != nil || b.Size() < a.Size() {
			return true
		}
	}
	return false
}

// TestRandomKills kills randomly chosen commands at a random moment of
// their run, on a normal and on a slow disk (strace delays every fsync by
// 20 ms), and counts the outcomes. ROOTKEEPER_KILL_CAMPAIGN sets the kills
// per disk (softhsm-test/kill-campaign.sh runs 500 each); CI runs a few.
func TestRandomKills(t *testing.T) {
	per := 6
	if v, err := strconv.Atoi(os.Getenv("ROOTKEEPER_KILL_CAMPAIGN")); err == nil && v > 0 {
		per = v
	}
	if _, err := exec.LookPath("strace"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("strace is required in CI (make deps installs it)")
		}
		t.Skip("strace is not installed; run make deps")
	}
	r := newCrashRig(t)
	seed := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("ROOTKEEPER_KILL_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (ROOTKEEPER_KILL_SEED reruns the same kills)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for _, disk := range []struct {
		name   string
		prefix []string
	}{{"normal", nil}, {"slow", slowDisk}} {
		took := map[string]time.Duration{}
		for _, c := range r.cmds {
			r.reference(t, c)
			dir := r.fresh(t, c)
			start := time.Now()
			if res := r.run(t, dir, c.args, nil, disk.prefix...); res.code != 0 {
				t.Fatalf("%s on the %s disk: exit %d\n%s", c.op, disk.name, res.code, res.stderr)
			}
			took[c.op] = time.Since(start)
			os.RemoveAll(dir)
		}
		ta := tally{}
		for i := range per {
			c := r.cmds[rng.IntN(len(r.cmds))]
			delay := time.Duration(rng.Int64N(int64(took[c.op]) * 11 / 10))
			dir := r.fresh(t, c)
			before := hashTree(t, dir)
			res := r.runKilledAfter(t, dir, c.args, delay, disk.prefix)
			what := fmt.Sprintf("%s disk, kill %d: %s killed after %s", disk.name, i+1, c.op, delay.Round(time.Millisecond))
			state := "completed"
			switch {
			case res.killed:
				state = r.settle(t, c, dir, before, what)
			case res.code != 0:
				t.Errorf("%s: exit %d without being killed\n%s", what, res.code, res.stderr)
			}
			ta.add(c.op, state)
			ta.add("all", state)
			if res.tokenLost {
				ta.add(c.op, "token-lost")
				ta.add("all", "token-lost")
			}
			if !r.next(t, c, dir, state, what) {
				ta.add(c.op, "rerun-failed")
				ta.add("all", "rerun-failed")
			}
			os.RemoveAll(dir)
		}
		t.Logf("%s disk: %d random kills", disk.name, per)
		ta.log(t, "before", "after", "completed", "corrupt", "rerun-failed", "token-lost")
	}
}

// TestRealDiskFull runs targets add of a 200 kB target on a small tmpfs
// filled so that the change runs out of space at a different write each
// time: a real ENOSPC from the kernel, not the fault hook. The exit status
// tells the truth each time, and with space freed the next command
// completes or goes on. Skipped where tmpfs cannot be mounted.
func TestRealDiskFull(t *testing.T) {
	r := newCrashRig(t)
	mnt := filepath.Join(r.work, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); TestDiskFullAtEveryWrite covers ENOSPC at each write", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	big := filepath.Join(r.work, "big.bin")
	data := bytes.Repeat([]byte("rootkeeper "), 200_000/11)
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := crashCmd{op: "targets-add", args: []string{"targets", "add", "--repo", "DIR", big}}
	ref := filepath.Join(r.work, "ref")
	exec.Command("cp", "-a", r.base, ref).Run()
	if res := r.run(t, ref, c.args, nil); res.code != 0 {
		t.Fatal(res.stderr)
	}
	r.refs[c.op] = &crashRef{files: listTree(t, ref)}
	baseTS, _ := os.ReadFile(filepath.Join(r.base, "metadata/timestamp.json"))
	ta := tally{}
	for free := int64(0); free <= 1_100_000; free += 50_000 {
		dir := filepath.Join(mnt, "repo")
		os.RemoveAll(dir)
		os.Remove(filepath.Join(mnt, "filler"))
		if out, err := exec.Command("cp", "-a", r.base, dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		fill(t, mnt, free)
		before := hashTree(t, dir)
		res := r.run(t, dir, c.args, nil)
		verdict := diskFullVerdict(res, publishedChange(r.base, dir, baseTS, false), hashTree(t, dir) == before)
		what := fmt.Sprintf("targets add with %d bytes free", free)
		if verdict == "" {
			t.Errorf("%s: the exit status does not tell the truth: exit %d\n%s", what, res.code, res.stderr)
			continue
		}
		ta.add("targets-add", verdict)
		os.Remove(filepath.Join(mnt, "filler"))
		state := r.settle(t, c, dir, before, what)
		ta.add("targets-add", state)
		r.next(t, c, dir, state, what)
	}
	ta.log(t, "nothing-written", "not-published", "done", "done-warned", "before", "after")
	if n := ta["targets-add"]; n["nothing-written"] == 0 || n["done"] == 0 {
		t.Errorf("the fill levels did not cover both a refused and a completed change: %v", n)
	}
}

// fill leaves about free bytes free on the file system of dir.
func fill(t *testing.T, dir string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	if avail <= free {
		return
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for left := avail - free; left > 0; left -= int64(len(buf)) {
		n := min(int64(len(buf)), left)
		if _, err := f.Write(buf[:n]); err != nil {
			break
		}
	}
}
