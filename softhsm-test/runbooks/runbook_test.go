package runbooks

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/softhsm-test/pivcard"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// TestRunbooks runs every docs/runbook-*.md as an officer would type it:
// its blocks in order, each command on a terminal of its own (PINs and
// answers typed at the prompts), with the real rootkeeper binary, on
// SoftHSM2 tokens and virtual YubiKeys made for the test. A runbook whose
// commands fail, or whose output excerpts are not what the commands print,
// fails. The conventions are in docs/testing.md#runbooks-that-run.
//
// ROOTKEEPER_RUNBOOKS=GLOB runs other files instead;
// ROOTKEEPER_RUNBOOK_TRANSCRIPTS=DIR writes what every command printed to
// DIR/NAME.txt, for writing runbooks.
func TestRunbooks(t *testing.T) {
	glob := filepath.Join(moduleRoot(t), "docs", "runbook-*.md")
	if g := os.Getenv("ROOTKEEPER_RUNBOOKS"); g != "" {
		glob = g // another set, while writing one
	}
	paths, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no docs/runbook-*.md")
	}
	bin := buildTools(t)
	for _, p := range paths {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "runbook-"), ".md")
		t.Run(name, func(t *testing.T) {
			if runner := ownRunner(t, p); runner != "" {
				t.Skipf("run by %s (it needs a notary-server and a registry)", runner)
			}
			rb, err := Parse(p)
			if err != nil {
				t.Fatal(err)
			}
			runRunbook(t, rb, bin)
		})
	}
}

// ownRunnerRE is the marker of a runbook whose blocks another test runs,
// because they need services this harness does not start:
// <!-- runbook-runner: PACKAGE-DIR TestName -->.
var ownRunnerRE = regexp.MustCompile(`<!-- runbook-runner: (\S+) (Test\w+) -->`)

// ownRunner returns "DIR TestName" when the runbook at p names its own
// runner, after checking that the test exists and reads that runbook, so
// that the marker cannot hide a runbook from every test.
func ownRunner(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m := ownRunnerRE.FindSubmatch(data)
	if m == nil {
		return ""
	}
	dir := filepath.Join(moduleRoot(t), string(m[1]))
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err == nil && bytes.Contains(src, []byte("func "+string(m[2])+"(t *testing.T)")) && bytes.Contains(src, []byte(filepath.Base(p))) {
			return string(m[1]) + " " + string(m[2])
		}
	}
	t.Fatalf("%s names its runner %s %s, but no test of that name in %s reads it", p, m[1], m[2], m[1])
	return ""
}

// moduleRoot is the directory of go.mod: this package is softhsm-test/runbooks.
func moduleRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

// buildTools builds rootkeeper and tuf-check once, into a directory of the
// test, and returns it.
func buildTools(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for name, pkg := range map[string]string{"rootkeeper": "./cmd/rootkeeper", "tuf-check": "./softhsm-test/cmd/tuf-check"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
		cmd.Dir = moduleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return bin
}

// rehearsal is one runbook's run: its own directories standing for the
// officer's machine, its environment, and what its outputs bound.
type rehearsal struct {
	t     *testing.T
	rb    *Runbook
	root  string // stands for / of the paths rewritten (see rewrite)
	env   []string
	state string // the shell's exported variables and umask, between steps
	cwd   string // a file holding the shell's working directory
	bind  *Bindings
	log   *os.File // ROOTKEEPER_RUNBOOK_TRANSCRIPTS
	name  string   // docs/runbook-….md, in failures
}

func runRunbook(t *testing.T, rb *Runbook, tools string) {
	r := &rehearsal{t: t, rb: rb, root: t.TempDir(), bind: NewBindings(), name: "docs/" + filepath.Base(rb.Path)}
	home := filepath.Join(r.root, "home", "officer")
	bin := filepath.Join(r.root, "bin")
	for _, d := range []string{home, bin, filepath.Join(r.root, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	r.state = filepath.Join(r.root, ".state")
	r.cwd = filepath.Join(r.root, ".cwd")
	if err := os.WriteFile(r.state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.cwd, []byte(home+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r.env = []string{
		"HOME=" + home,
		"TMPDIR=" + filepath.Join(r.root, "tmp"),
		"PATH=" + bin + ":" + os.Getenv("PATH"),
		"TERM=dumb",
		"LANG=C.UTF-8",
		// Scripts the rehearsals share (testdata/*.sh).
		"RUNBOOK_TESTDATA=" + filepath.Join(moduleRoot(t), "softhsm-test", "runbooks", "testdata"),
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME", k == "TMPDIR", k == "PATH", k == "TERM", k == "LANG", k == "SOFTHSM2_CONF",
			strings.HasPrefix(k, "ROOTKEEPER_"), strings.HasPrefix(k, "LC_"):
		default:
			r.env = append(r.env, kv)
		}
	}
	module := requireSoftHSM(t)
	r.env = append(r.env, "ROOTKEEPER_PKCS11_MODULE="+module)
	if len(rb.Tokens) > 0 {
		tokens := softhsm.NewTokens(t, rb.Tokens...)
		r.env = append(r.env, "SOFTHSM2_CONF="+tokens.ConfPath)
	}
	roots := r.startCards()
	rootkeeper := filepath.Join(tools, "rootkeeper")
	if roots != "" {
		// The virtual cards' attestations chain to a test CA, which
		// rootkeeper accepts only when named: every rootkeeper command of
		// the rehearsal names it, as a real YubiKey's Yubico roots need not.
		wrapper := "#!/bin/sh\nexec " + rootkeeper + " --attestation-roots=" + roots + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(bin, "rootkeeper"), []byte(wrapper), 0o755); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Symlink(rootkeeper, filepath.Join(bin, "rootkeeper")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(tools, "tuf-check"), filepath.Join(bin, "tuf-check")); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("ROOTKEEPER_RUNBOOK_TRANSCRIPTS"); dir != "" {
		f, err := os.Create(filepath.Join(dir, strings.TrimSuffix(filepath.Base(rb.Path), ".md")+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r.log = f
	}
	for _, s := range rb.Steps {
		r.step(s)
	}
}

// requireSoftHSM returns SoftHSM2's module, or skips the test (fails it in CI).
func requireSoftHSM(t *testing.T) string {
	t.Helper()
	if err := softhsm.Available(); err != nil {
		msg := fmt.Sprintf("SoftHSM2 is not installed (%v); install it with: %s", err, softhsm.InstallCommand)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	module, _ := softhsm.ModulePath()
	return module
}

// startCards inserts the rehearsal's virtual YubiKeys and returns their
// attestation CA's file ("" when there are none). The cards' serials are
// bound to themselves: they are the runbook's.
func (r *rehearsal) startCards() string {
	if len(r.rb.Cards) == 0 {
		return ""
	}
	t := r.t
	ca, err := pivcard.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	for slot, c := range r.rb.Cards {
		pivcard.StartCard(t, pivcard.Config{Serial: c.Serial, Version: c.Firmware, CA: ca}, slot)
		s := strconv.FormatUint(uint64(c.Serial), 10)
		r.bind.Bind(s, s)
	}
	if len(r.rb.Cards) == 1 {
		// rootkeeper looks for a serial in every reader: hold the other
		// slot too, so that no other test's card is in it.
		ctx, cancel := context.WithTimeout(context.Background(), pivcard.SlotWait)
		defer cancel()
		unlock, err := pivcard.LockSlot(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(unlock)
	}
	p := filepath.Join(r.root, "attestation-ca.pem")
	if err := os.WriteFile(p, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	r.env = append(r.env, "ROOTKEEPER_YUBIKEY_WAIT=0")
	return p
}

// rewriteRe finds the absolute paths that stand for the officer's machine:
// under /srv, /run, /etc/rootkeeper and /var/lib/rootkeeper. The test
// moves them under its own directory, in commands, files and answers, and
// moves them back in what the commands print.
var rewriteRe = regexp.MustCompile(`(^|[\s'"=:(>])(/(?:srv|run|etc/rootkeeper|var/lib/rootkeeper)(?:/|\b))`)

func (r *rehearsal) rewrite(s string) string {
	return rewriteRe.ReplaceAllString(s, "${1}"+r.root+"${2}")
}

func (r *rehearsal) where(s Step) string {
	what := ""
	if s.Rehearsal {
		what = " (rehearsal)"
	}
	return fmt.Sprintf("%s:%d%s", r.name, s.Line, what)
}

func (r *rehearsal) step(s Step) {
	t := r.t
	text := r.rewrite(r.bind.Subst(s.Text))
	if s.Kind == File {
		dir, err := os.ReadFile(r.cwd)
		if err != nil {
			t.Fatal(err)
		}
		p := r.rewrite(s.Path)
		if !filepath.IsAbs(p) {
			p = filepath.Join(strings.TrimSpace(string(dir)), p)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatalf("%s: writing %s: %v", r.where(s), s.Path, err)
		}
		return
	}
	var script strings.Builder
	fmt.Fprintf(&script, "set -a\n. %q\ncd \"$(cat %q)\"\n", r.state, r.cwd)
	if s.Kind == Script {
		script.WriteString("set -eo pipefail\n")
	}
	script.WriteString(text)
	fmt.Fprintf(&script, "\n__rc=$?\n{ export -p; echo umask $(umask); } >%q\npwd >%q\nexit $__rc\n", r.state, r.cwd)
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", script.String())
	cmd.Env = r.env
	cmd.Dir = r.root
	resp := &Responder{Expect: s.Expect, Answers: r.rb.Answers, Bindings: r.bind}
	term := &Terminal{Answer: resp.Answer, Timeout: 3 * time.Minute}
	start := time.Now()
	out, code, err := term.Run(cmd)
	out = strings.ReplaceAll(out, r.root, "")
	if r.log != nil {
		fmt.Fprintf(r.log, "### %s (%.1fs, exit %d)\n$ %s\n%s\n", r.where(s), time.Since(start).Seconds(), code, strings.TrimSpace(s.Text), out)
	}
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("%s: %s\n--- the command:\n%s\n--- what it printed (exit status %d):\n%s", r.where(s), fmt.Sprintf(format, a...), strings.TrimSpace(s.Text), code, out)
	}
	if err != nil {
		fail("%v", err)
	}
	if s.Kind == Script {
		if code != 0 {
			fail("a command of the block failed")
		}
		return
	}
	wantError := false
	for _, e := range s.Expect {
		if strings.HasPrefix(e, "rootkeeper: error:") {
			wantError = true
		}
	}
	switch {
	case wantError && code == 0:
		fail("the runbook shows an error, but the command succeeded")
	case !wantError && code != 0:
		fail("the command failed, but the runbook shows no rootkeeper: error: line")
	}
	if err := r.bind.Check(s.Expect, out); err != nil {
		fail("%v", err)
	}
}
