package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// leakPIN stands for a PIN an officer typed where it does not belong. No
// output of rootkeeper, and no file it writes, may ever contain it.
const leakPIN = "86420975"

// TestNoPINInOutput runs every command that takes a key URI (in process,
// on SoftHSM) with every way a PIN can be put where it does not belong,
// and greps everything rootkeeper printed and wrote for the PIN.
func TestNoPINInOutput(t *testing.T) {
	env := softhsm.NewTokens(t, "root", "online")
	t.Setenv(hsm.PINEnv, "")
	t.Setenv("ROOTKEEPER_PKCS11_MODULE", env.ModulePath)
	t.Setenv("ROOTKEEPER_YUBIKEY_WAIT", "0")
	dir := t.TempDir()
	sh := runCLI
	must := func(args ...string) {
		if out, code := sh(args...); code != 0 {
			t.Fatalf("rootkeeper %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	key := func(token, object string) string {
		return fmt.Sprintf("pkcs11:token=%s;object=%s?pin-source=%s", token, object, env.PINFile)
	}
	for _, k := range []struct{ token, object string }{{"root", "root"}, {"online", "targets"}, {"online", "snapshot"}, {"online", "timestamp"}} {
		must("key", "generate", key(k.token, k.object))
	}
	plan := func(timestamp string) string {
		p := filepath.Join(t.TempDir(), "plan.yaml")
		text := fmt.Sprintf("version: 1\nceremony: bootstrap\nrepository: example.org/leak\nroles:\n"+
			"  root: {threshold: 1, expires: 365d, keys: [%q]}\n  targets: {threshold: 1, expires: 90d, keys: [%q]}\n"+
			"  snapshot: {threshold: 1, expires: 21d, keys: [%q]}\n  timestamp: {threshold: 1, expires: 7d, keys: [%q]}\n",
			key("root", "root"), key("online", "targets"), key("online", "snapshot"), timestamp)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	repo := filepath.Join(dir, "repo")
	must("init", "--plan", plan(key("online", "timestamp")), "--repo", repo, "--yes", "-q")
	policy, err := os.ReadFile(filepath.Join(repo, "rootkeeper.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrong, twoLines := write("wrong.pin", leakPIN+"\n"), write("two.pin", leakPIN+"\n"+leakPIN+"\n")

	base := "pkcs11:token=online;object=timestamp"
	mistakes := pinMistakes(base, wrong, twoLines)
	commands := uriCommands(base, dir, repo, plan)
	// Commands that read the URIs from rootkeeper.yaml: the mistake is put there.
	fromPolicy := map[string][]string{
		"resign":      {"resign", "--repo", repo, "--role", "timestamp"},
		"publish":     {"publish", "--repo", repo},
		"targets add": {"targets", "add", "--repo", repo, write("t.txt", "t")},
		"verify":      {"verify", "--repo", repo},
		"status":      {"status", "--repo", repo},
		"delegate ls": {"delegate", "list", "--repo", repo, "--json"},
	}
	check := func(what, out string) {
		t.Helper()
		if strings.Contains(out, leakPIN) {
			t.Errorf("%s prints the PIN:\n%s", what, out)
		}
	}
	for _, m := range mistakes {
		for name, args := range commands {
			if name == "status --key" && m == leakPIN {
				continue // a key id prefix (hex digits), which status --key takes and repeats
			}
			out, _ := sh(args(m)...)
			check(name+" "+m, out)
		}
		if err := os.WriteFile(filepath.Join(repo, "rootkeeper.yaml"), bytes.ReplaceAll(policy, []byte(key("online", "timestamp")), []byte(m)), 0o644); err != nil {
			t.Fatal(err)
		}
		for name, args := range fromPolicy {
			out, _ := sh(args...)
			check(name+" with "+m+" in rootkeeper.yaml", out)
		}
		if err := os.WriteFile(filepath.Join(repo, "rootkeeper.yaml"), policy, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// ROOTKEEPER_PIN that is not a PIN, and a wrong one.
	for _, v := range []string{leakPIN + " ", " " + leakPIN, leakPIN} {
		t.Setenv(hsm.PINEnv, v)
		out, _ := sh("key", "show", base)
		check(hsm.PINEnv+"="+v, out)
		out, _ = sh("resign", "--repo", repo, "--role", "timestamp")
		check("resign with "+hsm.PINEnv+"="+v, out)
	}
	// Nothing rootkeeper wrote holds the PIN either.
	noPINInFiles(t, dir, wrong, twoLines)
}

// pinMistakes are the ways a PIN can be put where it does not belong, in
// the key URI base.
func pinMistakes(base, wrong, twoLines string) []string {
	return []string{
		base + "?pin-value=" + leakPIN, base + "?PIN-VALUE=" + leakPIN, base + ";Pin-Value=" + leakPIN,
		base + "?pin_value=" + leakPIN, base + "?pin-source=" + leakPIN, base + "?pin_source=" + leakPIN,
		base + "?PIN-SOURCE=" + leakPIN, base + "?pin=" + leakPIN, base + "?" + leakPIN, base + ";" + leakPIN,
		base + "?pin-source=file:" + leakPIN, base + "?pin-source=file://" + leakPIN + "/x",
		base + "?pin-source=" + leakPIN + "%0A", base + "?pin-source=" + wrong, base + "?pin-source=" + twoLines,
		"yubikey:serial=1;slot=9c?pin-source=" + leakPIN, "yubikey:serial=1;slot=9c?management-key-source=" + leakPIN,
		"yubikey:serial=1;slot=9c?pin-value=" + leakPIN, leakPIN, leakPIN + ":token=a",
	}
}

// uriCommands are the commands that take a key URI on the command line.
func uriCommands(base, dir, repo string, plan func(string) string) map[string]func(u string) []string {
	return map[string]func(u string) []string{
		"key generate": func(u string) []string { return []string{"key", "generate", strings.Replace(u, "timestamp", "new", 1)} },
		"key show":     func(u string) []string { return []string{"key", "show", u} },
		"key list":     func(u string) []string { return []string{"key", "list", u} },
		"init": func(u string) []string {
			return []string{"init", "--plan", plan(u), "--repo", filepath.Join(dir, "new"), "--yes"}
		},
		"rotate": func(u string) []string {
			return []string{"rotate", "--repo", repo, "--role", "timestamp", "--add", u, "--remove", base, "--yes"}
		},
		"revoke": func(u string) []string {
			return []string{"revoke", "--repo", repo, "--key", base, "--reason", "x", "--add", "timestamp=" + u, "--yes"}
		},
		"revoke-add": func(u string) []string {
			return []string{"revoke", "--repo", repo, "--key", base, "--reason", "x", "--add", u, "--yes"}
		},
		"delegate add": func(u string) []string {
			return []string{"delegate", "add", "--repo", repo, "--role", "team", "--key", u, "--paths", "team/*", "--yes"}
		},
		"status --key": func(u string) []string { return []string{"status", "--repo", repo, "--key", u} },
	}
}

// runCLI runs rootkeeper in process and returns what it printed (stdout and
// stderr) and its exit status.
func runCLI(args ...string) (string, int) {
	var out bytes.Buffer
	code := run(args, &out, &out)
	return out.String(), code
}

// noPINInFiles fails if a file under dir other than skip (and the policy
// the test itself edits) holds leakPIN.
func noPINInFiles(t *testing.T, dir string, skip ...string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || slices.Contains(skip, p) || strings.HasSuffix(p, "rootkeeper.yaml") {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(leakPIN)) {
			t.Errorf("%s holds the PIN", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
