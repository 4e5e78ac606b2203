package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// The JSON outputs against their reference, docs/json.md: every command
// that reads has --json; docs/json.md has a section for each command with
// --json; and each output, made on SoftHSM, starts with "schema_version",
// writes times as RFC 3339 in whole seconds (UTC) and durations as numbers
// in members named *_seconds, and has no member the reference leaves out.

// noJSON are the commands without --json: interactive set-up, shell
// completion, help, the man page generator.
var noJSON = map[string]bool{
	"rootkeeper yubikey setup": true, "rootkeeper yubikey unblock": true, "rootkeeper help": true,
	"rootkeeper completion": true, "rootkeeper completion bash": true, "rootkeeper completion zsh": true,
	"rootkeeper completion fish": true, "rootkeeper completion powershell": true,
}

func readJSONReference(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestEveryCommandHasJSON(t *testing.T) {
	ref := readJSONReference(t)
	a := &app{stdout: &bytes.Buffer{}, ui: &tui{stderr: &bytes.Buffer{}}}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		path := c.CommandPath()
		if c.Hidden || !c.Runnable() || len(c.Commands()) > 0 || noJSON[path] {
			return
		}
		if c.Flags().Lookup("json") == nil {
			t.Errorf("%s has no --json", path)
			return
		}
		if !strings.Contains(ref, "## `"+path+"`") {
			t.Errorf("docs/json.md has no section ## `%s`", path)
		}
	}
	walk(a.rootCommand())
}

// dataKeyed are members whose keys are data (role names, hash algorithms,
// free-form details), not names of the schema.
var dataKeyed = map[string]bool{"versions": true, "expires": true, "counts": true, "signed_roles": true, "hashes": true, "custom": true, "details": true, "files": true}

var (
	keyIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	timeRE  = regexp.MustCompile(`^\d{4}-\d\d-\d\dT`)
	rfc3339 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
)

// checkJSON walks a JSON value: it records every member name in names and
// reports times and durations not in the reference's form.
func checkJSON(t *testing.T, what, path string, v any, names map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		data := dataKeyed[path[strings.LastIndex(path, ".")+1:]]
		for k, val := range x {
			if !data && !keyIDRE.MatchString(k) {
				names[k] = true
				if strings.HasSuffix(k, "_seconds") {
					if _, ok := val.(float64); !ok {
						t.Errorf("%s: %s.%s is %v, not a number of seconds", what, path, k, val)
					}
				}
			}
			checkJSON(t, what, path+"."+k, val, names)
		}
	case []any:
		for _, e := range x {
			checkJSON(t, what, path+"[]", e, names)
		}
	case nil:
		t.Errorf("%s: %s is null (an empty list is [], an absent member is left out)", what, path)
	case string:
		if timeRE.MatchString(x) && !rfc3339.MatchString(x) {
			t.Errorf("%s: %s is %q, not RFC 3339 in whole seconds (UTC)", what, path, x)
		}
	}
}

func TestJSONOutputs(t *testing.T) {
	env := softhsm.NewTokens(t, "root", "online")
	t.Setenv(hsm.PINEnv, "")
	t.Setenv("ROOTKEEPER_PKCS11_MODULE", env.ModulePath)
	ref := readJSONReference(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	key := func(token, object string) string {
		return fmt.Sprintf("pkcs11:token=%s;object=%s?pin-source=%s", token, object, env.PINFile)
	}
	names := map[string]bool{}
	outputs := map[string]bool{}
	run := func(want int, args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(append(args, "--json"), &out, &errb); code != want {
			t.Fatalf("rootkeeper %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out.String(), errb.String())
		}
		what := "rootkeeper " + strings.Join(args, " ")
		if !bytes.HasPrefix(out.Bytes(), []byte("{\n  \"schema_version\": 1")) {
			t.Errorf("%s: the output does not start with schema_version:\n%.200s", what, out.String())
		}
		var v any
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out.String())
		}
		checkJSON(t, what, "", v, names)
		outputs[args[0]] = true
	}
	for _, o := range []string{"root:root", "online:targets", "online:snapshot", "online:timestamp", "online:releases", "online:bins"} {
		token, object, _ := strings.Cut(o, ":")
		run(0, "key", "generate", key(token, object))
	}
	run(0, "key", "show", key("root", "root"))
	run(0, "key", "list", "pkcs11:token=online?pin-source="+env.PINFile)
	plan := filepath.Join(dir, "plan.yaml")
	os.WriteFile(plan, []byte(fmt.Sprintf("version: 1\nceremony: bootstrap\nrepository: example.org/json\nroles:\n"+
		"  root: {threshold: 1, expires: 365d, keys: [%q]}\n  targets: {threshold: 1, expires: 90d, keys: [%q]}\n"+
		"  snapshot: {threshold: 1, expires: 21d, keys: [%q]}\n  timestamp: {threshold: 1, expires: 7d, keys: [%q]}\n",
		key("root", "root"), key("online", "targets"), key("online", "snapshot"), key("online", "timestamp"))), 0o600)
	run(0, "init", "--plan", plan, "--repo", repo, "--yes")
	file := filepath.Join(dir, "app.tgz")
	os.WriteFile(file, []byte("app"), 0o644)
	run(0, "targets", "add", "--repo", repo, "--prefix", "releases", file)
	run(0, "delegate", "add", "--repo", repo, "--role", "releases", "--key", key("online", "releases"), "--paths", "releases/*", "--yes")
	run(0, "delegate", "add", "--repo", repo, "--role", "bins", "--from", "releases", "--key", key("online", "bins"), "--bins", "4", "--yes")
	run(0, "delegate", "list", "--repo", repo)
	run(0, "delegate", "bin", "--repo", repo, "--role", "bins", "releases/x.tgz")
	run(0, "targets", "list", "--repo", repo)
	run(0, "targets", "remove", "--repo", repo, "releases/app.tgz")
	run(0, "publish", "--repo", repo)
	run(0, "status", "--repo", repo)
	run(0, "status", "--repo", repo, "--key", key("online", "bins"))
	run(3, "status", "--repos", repo, "--at", "+2d")
	run(0, "verify", "--repo", repo)
	run(4, "verify", "--repo", repo, "--at", "+100d")
	run(0, "resign", "--repo", repo, "--dry-run", "--at", "+70d")
	run(0, "resign", "--repos", repo, "--role", "timestamp")
	run(0, "resign", "--repo", repo, "--role", "snapshot")
	run(0, "calendar", "--repo", repo)
	run(0, "repair", "--repo", repo, "--dry-run")
	run(0, "rotate", "--repo", repo, "--role", "timestamp", "--add", key("online", "releases"), "--remove", key("online", "timestamp"), "--yes")
	run(0, "revoke", "--repo", repo, "--key", key("online", "bins"), "--reason", "test", "--drop", "bins", "--yes")
	run(0, "transcript", "verify", "--repo", repo)
	run(0, "transcript", "show", "--repo", repo)
	run(0, "audit", "--repo", repo)

	var missing []string
	for n := range names {
		if !strings.Contains(ref, "`"+n+"`") {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/json.md does not describe these members: %s", strings.Join(missing, ", "))
	}
	t.Logf("%d outputs checked, %d member names", len(outputs), len(names))
}
