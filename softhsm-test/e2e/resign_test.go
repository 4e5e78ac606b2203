package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// buildRootkeeper builds the command into a temporary directory.
func buildRootkeeper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rootkeeper")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/rootkeeper/rootkeeper/cmd/rootkeeper")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// bootstrap makes P-256 keys in tokens "root" and "online" and a
// repository in dir with one target, signed at time now, then closes the
// session so that only the rootkeeper command touches the tokens after.
func bootstrap(t *testing.T, env *softhsm.Env, dir string, now time.Time, lifetimes map[string]string) []byte {
	t.Helper()
	s, _ := newSession(t)
	s.Now = func() time.Time { return now }
	ctx := context.Background()
	uris := map[string]string{"root": env.URI("root", "root"), "targets": env.URI("online", "targets"),
		"snapshot": env.URI("online", "snapshot"), "timestamp": env.URI("online", "timestamp")}
	for _, r := range []string{"root", "targets", "snapshot", "timestamp"} {
		generate(t, s, uris[r], hsm.ECDSAP256)
	}
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "e2e-resign"}
	plan.Roles.Root = role(1, lifetimes["root"], uris["root"])
	plan.Roles.Targets = role(1, lifetimes["targets"], uris["targets"])
	plan.Roles.Snapshot = role(1, lifetimes["snapshot"], uris["snapshot"])
	plan.Roles.Timestamp = role(1, lifetimes["timestamp"], uris["timestamp"])
	if _, err := s.Init(ctx, plan, dir); err != nil {
		t.Fatalf("init: %v", err)
	}
	data := []byte("kept valid for a year\n")
	if _, err := s.AddTargets(ctx, dir, "targets", []ceremony.TargetInput{{Name: "app.txt", Data: data}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return data
}

func runRootkeeper(t *testing.T, bin string, env *softhsm.Env, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(env.Environ(), "ROOTKEEPER_PIN=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestResignAcrossAYear: a repository whose timestamp, snapshot, targets
// and root enter their windows one by one is kept valid by re-signing
// every three days for a simulated year and a half: the session's clock
// is set in Go (Session.Now), as the command has no way to move it.
// rootkeeper's own verification checks it at every step; go-tuf and
// tuf-js, with their state kept from one check to the next as real
// clients do, at the step where each role is first re-signed and at the
// end. Back at the real clock, a write is refused: the transcript's last
// entry is a year and a half ahead.
func TestResignAcrossAYear(t *testing.T) {
	env := softhsm.NewTokens(t, "root", "online")
	t0 := time.Now().UTC().Truncate(time.Second)
	dir := filepath.Join(t.TempDir(), "repo")
	data := bootstrap(t, env, dir, t0, map[string]string{"root": "365d", "targets": "90d", "snapshot": "21d", "timestamp": "7d"})
	trusted := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
	metadataURL, targetsURL := clients.Serve(t, dir)
	cache := t.TempDir()

	first := map[string]int{} // role → day it was first re-signed
	var order []string
	check := func(day int, at time.Time) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, c := range clients.All(t, clients.Config{TrustedRoot: trusted, MetadataURL: metadataURL, TargetsURL: targetsURL, At: at, CacheDir: cache}) {
			if err := clients.Verify(ctx, c, map[string][]byte{"app.txt": data}); err != nil {
				t.Errorf("day %d: %s refused the repository: %v", day, c.Name(), err)
			} else {
				t.Logf("day %d: %s accepts (trusts %v)", day, c.Name(), c.TrustedVersions())
			}
		}
	}
	s, _ := newSession(t)
	var at time.Time
	s.Now = func() time.Time { return at }
	const last = 555
	for day := 3; day <= last; day += 3 {
		at = t0.Add(time.Duration(day) * 24 * time.Hour)
		res, err := s.Resign(context.Background(), dir, ceremony.ResignOptions{})
		if err != nil || (res.Outcome != ceremony.OutcomeResigned && res.Outcome != ceremony.OutcomeNothingDue) {
			t.Fatalf("day %d: resign: %v %+v", day, err, res)
		}
		if !res.At.Equal(at) {
			t.Fatalf("day %d: resign ran at %s, not at the session's clock %s", day, res.At, at)
		}
		newRole := false
		for _, r := range res.Resigned {
			if _, ok := first[r]; !ok {
				first[r] = day
				order = append(order, r)
				newRole = true
			}
		}
		rep, err := ceremony.Verify(dir, nil, at)
		if err != nil || !rep.OK {
			t.Fatalf("day %d: a client would refuse the repository: %v %+v", day, err, rep)
		}
		st, err := ceremony.Status(dir, at)
		if err != nil || st.Health != ceremony.Healthy {
			t.Fatalf("day %d: status after resign: %v %+v", day, err, st)
		}
		if newRole || day+3 > last {
			check(day, at)
		}
	}
	if got := strings.Join(order, " "); got != "timestamp snapshot targets root" {
		t.Errorf("roles entered their windows in the order %q (days %v)", got, first)
	}
	if first["root"] < 270 || first["root"] > 280 {
		t.Errorf("root first re-signed on day %d, want within its 90-day window of day 365", first["root"])
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata/3.root.json")); err != nil {
		t.Errorf("after a year and a half root should be at version 3: %v", err)
	}

	// The real clock again: behind the transcript, so a write is refused
	// before any device, and the repository stays as it is.
	before := repoHash(t, dir)
	at = time.Now().UTC()
	_, err := s.Publish(context.Background(), dir)
	var ce *ceremony.ClockError
	if !errors.As(err, &ce) || ce.Last.Sub(ce.Now) < (last-1)*24*time.Hour {
		t.Errorf("a write with the clock behind the transcript: %v", err)
	}
	if repoHash(t, dir) != before {
		t.Errorf("the refused write changed the repository")
	}
}

// repoHash hashes a repository's files, leaving out rootkeeper's lock file
// and the temporary files of interrupted writes (the next command removes
// them), such as the scratch file of a journal that was never committed.
func repoHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() || rel == ceremony.LockFile || leftover.MatchString(filepath.ToSlash(rel)) && !strings.HasSuffix(rel, ceremony.JournalFile) || strings.HasPrefix(d.Name(), ".rootkeeper-write-test-") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		lines = append(lines, rel+" "+hex.EncodeToString(h[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}

// fullyResigned checks a repository a run has finished: a client accepts it
// at at, root is no longer due, and the transcript's last entry is the
// re-signing, with the exact bytes of every file it names on disk.
func fullyResigned(t *testing.T, dir string, at time.Time) {
	t.Helper()
	if rep, err := ceremony.Verify(dir, nil, at); err != nil || !rep.OK {
		t.Fatalf("%s: %v %+v", dir, err, rep)
	}
	st, err := ceremony.Status(dir, at)
	if err != nil || st.Health != ceremony.Healthy {
		t.Fatalf("%s: not fully re-signed: %v %+v", dir, err, st)
	}
	entries, err := ceremony.ParseTranscript(readFile(t, filepath.Join(dir, ceremony.TranscriptFile)))
	if err != nil {
		t.Fatal(err)
	}
	e := entries[len(entries)-1]
	if e.Operation != "resign" {
		t.Fatalf("%s: last transcript entry %q", dir, e.Operation)
	}
	for p, sum := range e.Files {
		if p == ceremony.TranscriptFile {
			continue
		}
		h := sha256.Sum256(readFile(t, filepath.Join(dir, p)))
		if hex.EncodeToString(h[:]) != sum {
			t.Fatalf("%s: %s differs from what the transcript recorded", dir, p)
		}
	}
}

// TestResignBatchKilled runs `rootkeeper resign --repos` over 200
// repositories (root due) and kills it with SIGKILL part of the way
// through. Every repository is then either byte-identical to before, or
// fully re-signed once its journal is completed (which any later run does
// first); clients accept every one throughout; running the command again
// finishes the batch.
func TestResignBatchKilled(t *testing.T) {
	env := softhsm.NewTokens(t, "root", "online")
	bin := buildRootkeeper(t)
	now := time.Now().UTC().Truncate(time.Second)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	// Born 300 days ago (the session's clock set in Go), then published
	// today: root is due (65 days left of 365, window 90), nothing else.
	// The command below runs at the real clock: it has no other.
	bootstrap(t, env, src, now.Add(-300*24*time.Hour), map[string]string{"root": "365d", "targets": "730d", "snapshot": "365d", "timestamp": "90d"})
	pub, _ := newSession(t)
	if _, err := pub.Publish(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	fleetDir := filepath.Join(base, "fleet")
	const n = 200
	before := map[string]string{}
	var dirs []string
	if err := os.MkdirAll(fleetDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d := filepath.Join(fleetDir, fmt.Sprintf("repo-%03d", i))
		if out, err := exec.Command("cp", "-a", src, d).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		dirs = append(dirs, d)
		before[d] = repoHash(t, d)
	}
	args := []string{"resign", "--repos", filepath.Join(fleetDir, "*"), "--jobs", "4"}

	cmd := exec.Command(bin, args...)
	cmd.Env = append(env.Environ(), "ROOTKEEPER_PIN=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	lines := 0
	for sc.Scan() {
		if strings.Contains(sc.Text(), "] ") {
			lines++
		}
		if lines == 60 {
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	go func() { // drain
		for sc.Scan() {
		}
	}()
	cmd.Wait()
	if lines < 60 {
		t.Fatalf("the batch ended after %d repositories, before it could be killed", lines)
	}

	// Right after the kill: clients accept every repository (the old root or
	// the new); each is untouched, done, or has a committed journal.
	untouched, done, pending := 0, 0, 0
	at := time.Now()
	for _, d := range dirs {
		if rep, err := ceremony.Verify(d, nil, at); err != nil || !rep.OK {
			t.Errorf("%s: a client would refuse it after the kill: %v %+v", d, err, rep)
		}
		switch _, jerr := os.Stat(filepath.Join(d, ceremony.JournalFile)); {
		case repoHash(t, d) == before[d]:
			untouched++
		case jerr == nil:
			pending++
			lock, err := ceremony.LockRepo(d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ceremony.RecoverJournal(d); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
			lock.Unlock(false)
			fullyResigned(t, d, at)
		default:
			done++
			fullyResigned(t, d, at)
		}
	}
	t.Logf("after SIGKILL: %d done, %d with a journal to complete, %d untouched", done, pending, untouched)
	if done+pending < 50 || untouched == 0 {
		t.Errorf("the kill did not land mid-batch: %d done, %d pending, %d untouched", done, pending, untouched)
	}
	// rootkeeper verify agrees on a sample.
	for _, d := range []string{dirs[0], dirs[n/2], dirs[n-1]} {
		if out, stderr, code := runRootkeeper(t, bin, env, "verify", "--repo", d); code != 0 {
			t.Errorf("rootkeeper verify %s: exit %d\n%s%s", d, code, out, stderr)
		}
	}

	// The same command again finishes the batch.
	out, stderrText, code := runRootkeeper(t, bin, env, args...)
	if code != 0 {
		t.Fatalf("rerun: exit %d\n%s\n%s", code, out, stderrText)
	}
	if !strings.Contains(out, fmt.Sprintf("%d resigned", untouched)) || !strings.Contains(out, fmt.Sprintf("%d nothing-due", n-untouched)) {
		t.Errorf("rerun summary:\n%s", out)
	}
	for _, d := range dirs {
		fullyResigned(t, d, time.Now())
	}
}
