package ceremony

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The bootstrap plan's PIN and touch requirements survive in
// rootkeeper.yaml, so later ceremonies (rotate) hold new keys to them.
func TestPolicyKeepsKeyPolicy(t *testing.T) {
	p := &Policy{Version: 1, Require: RequireHardwareAttested, Roles: map[string]RolePolicy{
		RoleRoot:      {Expires: Duration(365 * 24 * 3600e9), Keys: []string{"yubikey:serial=1;slot=9c"}, KeyPolicy: KeyPolicy{PINPolicy: "always", TouchPolicy: "always"}},
		RoleTimestamp: {Expires: Duration(7 * 24 * 3600e9), Keys: []string{"pkcs11:token=online;object=ts"}},
	}}
	data, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(data), "pin_policy") != 1 {
		t.Errorf("pin_policy should appear once (omitted where unset):\n%s", data)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, PolicyFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadPolicy(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kp := got.Roles[RoleRoot].KeyPolicy; kp.PINPolicy != "always" || kp.TouchPolicy != "always" {
		t.Errorf("root key policy after a round trip: %+v", kp)
	}
	if kp := got.Roles[RoleTimestamp].KeyPolicy; kp != (KeyPolicy{}) {
		t.Errorf("timestamp key policy: %+v", kp)
	}
}

// rootkeeper.yaml is validated as strictly as a plan: every problem with
// its field path, so that a typo cannot weaken a check (pin_policy: alway
// used to rank as "no requirement").
func TestLoadPolicyStrict(t *testing.T) {
	good := `version: 1
consistent_snapshot: true
require: hardware-born
roles:
  root: { expires: 365d, keys: [ "pkcs11:token=root;object=root" ], pin_policy: always }
  targets: { expires: 90d, keys: [ "pkcs11:token=online;object=targets" ] }
  snapshot: { expires: 21d, keys: [ "pkcs11:token=online;object=snapshot" ] }
  timestamp: { expires: 7d, window: 6d, keys: [ "pkcs11:token=online;object=timestamp" ] }
`
	if _, probs := ParsePolicy([]byte(good)); len(probs) > 0 {
		t.Fatalf("a good policy refused: %v", probs)
	}
	for _, c := range []struct{ old, new, want string }{
		{"pin_policy: always", "pin_policy: alway", `roles.root.pin_policy: must be once or always (got "alway")`},
		{"pin_policy: always", "touch_policy: sometimes", `roles.root.touch_policy: must be cached or always (got "sometimes")`},
		{"require: hardware-born", "require: hardware", `require: must be hardware-born, hardware-attested or none (got "hardware")`},
		{"require: hardware-born", "requires: none", `unknown field "requires"`},
		{"window: 6d", "windw: 6d", `unknown field "windw"`},
		{"window: 6d", "window: 7d", "roles.timestamp.window: 7d is not shorter than expires (7d)"},
		{"expires: 7d", "expires: 300d", "roles.timestamp.expires: 300d is longer than the maximum of 90d"},
		{"expires: 365d", "expires: 12h", "roles.root.expires: 12h is shorter than the minimum of 1d"},
		{"expires: 90d", "expires: 1000000d", "more than 100 years"},
		{"version: 1", "version: 2", "version: must be 1 (got 2)"},
		{"consistent_snapshot: true", "consistent_snapshot: maybe", "cannot unmarshal"},
		{`"pkcs11:token=online;object=targets"`, `"file:/etc/key.pem"`, `roles.targets.keys[0]: "file:***" is not a hardware key URI`},
		{`"pkcs11:token=online;object=snapshot"`, `"pkcs11:token=online;object=snapshot;object=x"`, "roles.snapshot.keys[0]: "},
		{`[ "pkcs11:token=root;object=root" ]`, `[ "pkcs11:token=root;object=root", "pkcs11:token=root;object=root?pin-source=/p" ]`, "roles.root.keys[1]: the same key as roles.root.keys[0]"},
	} {
		if !strings.Contains(good, c.old) {
			t.Fatalf("test case: %q not in the policy", c.old)
		}
		_, probs := ParsePolicy([]byte(strings.Replace(good, c.old, c.new, 1)))
		if !strings.Contains(strings.Join(probs, "\n"), c.want) {
			t.Errorf("%s → %s: problems %q, want %q", c.old, c.new, probs, c.want)
		}
	}

	// LoadPolicy names the file and says what to do.
	dir := t.TempDir()
	bad := strings.Replace(strings.Replace(good, "pin_policy: always", "pin_policy: alway", 1), "expires: 7d", "expires: 300d", 1)
	if err := os.WriteFile(filepath.Join(dir, PolicyFile), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPolicy(dir)
	var re *RepoError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "rootkeeper.yaml has 2 problems") || !strings.Contains(re.Hint(), "docs/plan-reference.md#policy") {
		t.Errorf("LoadPolicy: %v", err)
	}
}
