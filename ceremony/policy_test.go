package ceremony

import (
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
