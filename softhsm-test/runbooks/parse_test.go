package runbooks

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sample = "# A runbook\n" +
	"<!-- rehearsal: made for the test\n" +
	"softhsm root-a online\n" +
	"yubikey 18012345 5.4.3\n" +
	"answer \"SO PIN\" 87654321\n" +
	"answer \"PIN\" 4321\n" +
	"```sh\nmkdir -p /srv/tuf\n```\n" +
	"-->\n" +
	"Prose.\n" +
	"```sh norun\ngit clone …\n```\n" +
	"<!-- an ordinary comment\n```sh\nnot run\n```\n-->\n" +
	"1. In a list:\n\n" +
	"   ```console\n" +
	"   $ rootkeeper rotate --repo /srv/tuf/app \\\n" +
	"       --role root\n" +
	"   rootkeeper: opening …\n" +
	"   Sign and write? [y/N] y\n" +
	"   ```\n" +
	"```yaml file=plan.yaml\nversion: 1\n```\n" +
	"```\nnot run either\n```\n"

func writeSample(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runbook-x.md")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	rb, err := Parse(writeSample(t, sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rb.Tokens, " "); got != "root-a online" {
		t.Errorf("tokens %q", got)
	}
	if len(rb.Cards) != 1 || rb.Cards[0].Serial != 18012345 || rb.Cards[0].Firmware != [3]byte{5, 4, 3} {
		t.Errorf("cards %+v", rb.Cards)
	}
	if len(rb.Answers) != 2 || rb.Answers[0] != (Answer{"SO PIN", "87654321"}) {
		t.Errorf("answers %+v", rb.Answers)
	}
	if len(rb.Steps) != 3 {
		t.Fatalf("%d steps, want 3: %+v", len(rb.Steps), rb.Steps)
	}
	s := rb.Steps[0]
	if s.Kind != Script || !s.Rehearsal || s.Text != "mkdir -p /srv/tuf\n" || s.Line != 7 {
		t.Errorf("step 0 %+v", s)
	}
	s = rb.Steps[1]
	if s.Kind != Command || s.Rehearsal || s.Text != "rootkeeper rotate --repo /srv/tuf/app \\\n    --role root" ||
		len(s.Expect) != 2 || s.Expect[1] != "Sign and write? [y/N] y" {
		t.Errorf("step 1 %+v", s)
	}
	if s = rb.Steps[2]; s.Kind != File || s.Path != "plan.yaml" || s.Text != "version: 1\n" {
		t.Errorf("step 2 %+v", s)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"nothing runs":     "# x\n```sh norun\nls\n```\n<!-- rehearsal\n```sh\nls\n```\n-->\n",
		"console output":   "```console\noutput first\n$ ls\n```\n",
		"no answer":        "```console\n$ rootkeeper init\nSign and write? [y/N]\n```\n",
		"unclosed block":   "```sh\nls\n",
		"unclosed comment": "```sh\nls\n```\n<!-- rehearsal\n",
		"bad card":         "<!-- rehearsal\nyubikey twelve\n-->\n```sh\nls\n```\n",
	} {
		if _, err := Parse(writeSample(t, text)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestMatch(t *testing.T) {
	b := NewBindings()
	out := strings.Join([]string{
		"rootkeeper: generating a ecdsa-p256 key",
		"uri:        pkcs11:token=root-a;object=root;id=%F4%93%D7",
		"keyid:      1111111111111111111111111111111111111111111111111111111111111111",
		"  root   2 of 3 keys, expires 2027-11-26T10:00:00Z (in 365d)",
		"    111111111111  ecdsa-p256 pkcs11:token=root-a;object=root",
	}, "\n")
	expect := []string{
		"uri: pkcs11:token=root-a;object=root;id=%AB%CD",
		"keyid: ca29ea64433070f4cc14f0158c1880ba8aad7209c43d7a3d9eb8c1b9c2df93ae",
		"…",
		"root 2 of 3 keys, expires 2027-11-25T01:42:17Z (in 365d)",
		"ca29ea644330 ecdsa-p256 pkcs11:token=root-a;object=root",
	}
	if err := b.Check(expect, out); err != nil {
		t.Fatal(err)
	}
	if got := b.Subst("--remove ca29ea644330 --key ca29ea64433070f4cc14f0158c1880ba8aad7209c43d7a3d9eb8c1b9c2df93ae deadbeef 0123"); got !=
		"--remove 111111111111 --key 1111111111111111111111111111111111111111111111111111111111111111 deadbeef 0123" {
		t.Errorf("Subst: %s", got)
	}
	// A bound value must be printed again as bound; order counts.
	if err := b.Check([]string{"ca29ea644330 ecdsa-p256 …"}, "bf1111111111 ecdsa-p256 x"); err == nil {
		t.Error("a bound value matched another value")
	}
	if err := NewBindings().Check([]string{"b", "a"}, "a\nb"); err == nil {
		t.Error("order not checked")
	}
	c := NewBindings()
	c.Bind("ca29ea64433070f4", "2222222222222222")
	if err := c.Check([]string{"key ca29ea644330"}, "key 111111111111"); err == nil {
		t.Error("a prefix of a bound value matched another value")
	}
	if err := c.Check([]string{"Enter user PIN for token \"a\": ^C"}, "Enter user PIN for token \"a\":"); err != nil {
		t.Error(err)
	}
}

func TestResponder(t *testing.T) {
	r := &Responder{
		Expect:   []string{"Change these credentials now? [y/N] n", "Destroy it? [y/N] ^C", "Enter PUK for YubiKey serial 18012345 (3 tries left): ^C"},
		Answers:  []Answer{{"SO PIN", "87654321"}, {"PIN", "4321"}},
		Bindings: NewBindings(),
	}
	for _, c := range []struct {
		partial, text string
		secret, ok    bool
	}{
		{"Change these credentials now? [y/N] ", "n", false, true},
		{"Sign and write? [y/N] ", "y", false, true},
		{"Destroy it? [y/N] ", ctrlC, false, true},
		{"Enter PUK for YubiKey serial 18012345 (3 tries left): ", ctrlC, false, true},
		{"Please enter SO PIN: ", "87654321", true, true},
		{"Enter user PIN for token \"a\" (serial 1): ", "4321", true, true},
		{"uri:        pkcs11:token", "", false, false},
	} {
		text, secret, ok := r.Answer(c.partial)
		if text != c.text || secret != c.secret || ok != c.ok {
			t.Errorf("%q: got %q %v %v", c.partial, text, secret, ok)
		}
	}
}

func TestTerminal(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	term := &Terminal{Answer: func(p string) (string, bool, bool) {
		switch {
		case strings.HasSuffix(p, "PIN: "):
			return "4321", true, true
		case strings.HasSuffix(p, "[y/N] "):
			return "y", false, true
		}
		return "", false, false
	}}
	cmd := exec.Command("bash", "-c", `read -r -s -p "PIN: " pin </dev/tty; echo; read -r -p "go? [y/N] " ok </dev/tty; echo "pin=${#pin} ok=$ok"; [ -t 0 ]; exit 3`)
	out, code, err := term.Run(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 || !strings.Contains(out, "go? [y/N] y\n") || !strings.Contains(out, "pin=4 ok=y") || strings.Contains(out, "4321") {
		t.Errorf("exit %d, output %q", code, out)
	}
	// Ctrl-C reaches the program as SIGINT.
	term.Answer = func(p string) (string, bool, bool) { return ctrlC, false, strings.HasSuffix(p, "wait: ") }
	// (A loop of sleeps, not read: bash runs a trap only between commands,
	// and a signal that comes just before read blocks would wait for ever.)
	out, code, err = term.Run(exec.Command("bash", "-c", `trap 'echo interrupted; exit 7' INT; printf 'wait: '; while :; do sleep 0.05; done`))
	if err != nil || code != 7 || !strings.Contains(out, "interrupted") {
		t.Errorf("Ctrl-C: exit %d, %v, output %q", code, err, out)
	}
	// A prompt nobody answers stops the command instead of hanging.
	term = &Terminal{Idle: 300 * time.Millisecond}
	_, _, err = term.Run(exec.Command("bash", "-c", `printf 'Enter PUK: '; read -r x`))
	if err == nil || !strings.Contains(err.Error(), `"Enter PUK:"`) {
		t.Errorf("unanswered prompt: %v", err)
	}
}
