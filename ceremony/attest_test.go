package ceremony

import (
	"errors"
	"strings"
	"testing"

	"github.com/rootkeeper/rootkeeper/hsm"
)

func TestKeyPolicy(t *testing.T) {
	piv := func(pin, touch string) *Key {
		return &Key{URI: "yubikey:serial=1;slot=9c", Evidence: &hsm.Evidence{Kind: hsm.EvidencePIV, Serial: 1, Slot: "9c",
			PINPolicy: pin, TouchPolicy: touch, Certificates: [][]byte{{1}, {2}}, Roots: "yubico"}}
	}
	rootReq := KeyPolicy{PINPolicy: "always", TouchPolicy: "cached"}
	for _, tc := range []struct {
		key  *Key
		req  KeyPolicy
		fail string
	}{
		{piv("always", "always"), rootReq, ""},
		{piv("always", "cached"), rootReq, ""},
		{piv("never", "always"), rootReq, "roles.root requires PIN policy always, but the key's attestation says PIN policy never"},
		{piv("once", "always"), rootReq, "PIN policy once"},
		{piv("always", "never"), rootReq, "touch policy never"},
		{piv("always", "cached"), KeyPolicy{TouchPolicy: "always"}, "touch policy cached"},
		{piv("once", "never"), KeyPolicy{}, ""},
		// A key without attestation has no attested policy.
		{&Key{URI: "yubikey:serial=1;slot=82", Evidence: &hsm.Evidence{Kind: hsm.EvidencePIV, Serial: 1, Slot: "82"}}, rootReq, "has no attested PIN policy"},
		// PKCS#11 keys are governed by require:, not by YubiKey policies.
		{&Key{URI: "pkcs11:token=a;object=b", Evidence: &hsm.Evidence{Kind: hsm.EvidencePKCS11}}, rootReq, ""},
	} {
		err := checkKeyPolicy(tc.key, "root", tc.req)
		if tc.fail == "" {
			if err != nil {
				t.Errorf("%+v %+v: %v", tc.key.Evidence, tc.req, err)
			}
			continue
		}
		var pe *PolicyError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.fail) || !strings.Contains(pe.Hint(), "--pin-policy always") {
			t.Errorf("%+v %+v: %v, want %q", tc.key.Evidence, tc.req, err, tc.fail)
		}
	}

	plan := `version: 1
ceremony: bootstrap
roles:
  root: {threshold: 1, keys: ["yubikey:serial=1;slot=9c"], expires: 365d, pin_policy: always, touch_policy: cached}
  targets: {threshold: 1, keys: ["pkcs11:token=a;object=t"], expires: 90d, pin_policy: never}
  snapshot: {threshold: 1, keys: ["pkcs11:token=a;object=s"], expires: 21d, touch_policy: sometimes}
  timestamp: {threshold: 1, keys: ["pkcs11:token=a;object=ts"], expires: 7d}
`
	_, err := ParsePlan("plan.yaml", []byte(plan))
	var pe *PlanError
	if !errors.As(err, &pe) || len(pe.Problems) != 2 || !strings.Contains(pe.Problems[0], "roles.targets.pin_policy: must be once or always") ||
		!strings.Contains(pe.Problems[1], "roles.snapshot.touch_policy: must be cached or always") {
		t.Fatalf("plan: %v", err)
	}
	p, err := ParsePlan("plan.yaml", []byte(strings.NewReplacer("pin_policy: never", "", "touch_policy: sometimes", "").Replace(plan)))
	if err != nil || p.Roles.Root.PINPolicy != "always" || p.Roles.Root.TouchPolicy != "cached" {
		t.Fatalf("plan: %v %+v", err, p)
	}
}

func TestEvidenceWarnings(t *testing.T) {
	if w := evidenceWarnings(&hsm.Evidence{Kind: hsm.EvidencePIV, Serial: 7, Firmware: "5.4.3"}); len(w) != 1 || !strings.Contains(w[0], "YSA-2024-03") {
		t.Errorf("5.4.3: %v", w)
	}
	for _, fw := range []string{"5.7.0", "5.7.1", "6.0.0"} {
		if w := evidenceWarnings(&hsm.Evidence{Kind: hsm.EvidencePIV, Firmware: fw}); len(w) != 0 {
			t.Errorf("%s: %v", fw, w)
		}
	}
}
