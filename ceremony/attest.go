package ceremony

import (
	"fmt"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// KeyPolicy is what a role's plan may require of the PIN and touch
// policies its YubiKey keys were generated with, as their attestation
// states them. Each field is a minimum: PIN policy "once" accepts once and
// always, "always" only always; touch policy "cached" accepts cached and
// always, "always" only always. Empty fields require nothing.
//
// A YubiKey fixes a key's policies when it generates it, and its
// attestation certifies them, so the requirement is checked against the
// attestation, not against what the device says at signing time. Keys
// without PIV attestation (PKCS#11 keys) have no such policies: the plan's
// require: field governs them.
type KeyPolicy struct {
	PINPolicy   string `yaml:"pin_policy,omitempty"`
	TouchPolicy string `yaml:"touch_policy,omitempty"`
}

// Strength of each PIN and touch policy, weakest first.
var (
	pinRank   = map[string]int{"never": 0, "once": 1, "match-once": 1, "always": 2, "match-always": 2}
	touchRank = map[string]int{"never": 0, "cached": 1, "always": 2}
)

// validateKeyPolicy reports unknown policy requirements.
func validateKeyPolicy(path string, kp KeyPolicy, add func(string, string, ...any)) {
	switch kp.PINPolicy {
	case "", "once", "always":
	default:
		add(path+".pin_policy", "must be once or always (got %q)", kp.PINPolicy)
	}
	switch kp.TouchPolicy {
	case "", "cached", "always":
	default:
		add(path+".touch_policy", "must be cached or always (got %q)", kp.TouchPolicy)
	}
}

// PolicyError reports a key whose attested PIN or touch policy is weaker
// than its role's plan requires.
type PolicyError struct {
	URI, Role, Policy string // Policy is "PIN policy" or "touch policy"
	Want, Have        string // Have is "" when the key has no attested policy
}

// Error names the role, the policy, what it requires and what the key has.
func (e *PolicyError) Error() string {
	if e.Have == "" {
		return fmt.Sprintf("%s: roles.%s requires %s %s, and the key has no attested %s", e.URI, e.Role, e.Policy, e.Want, e.Policy)
	}
	return fmt.Sprintf("%s: roles.%s requires %s %s, but the key's attestation says %s %s", e.URI, e.Role, e.Policy, e.Want, e.Policy, e.Have)
}

// Hint says what to do: a YubiKey cannot change a key's policies.
func (e *PolicyError) Hint() string {
	return "a YubiKey fixes a key's policies when it generates it: generate a new key with rootkeeper key generate URI --pin-policy always --touch-policy always (docs/runbook-yubikey.md)"
}

// checkKeyPolicy checks a key's attested policies against its role's
// requirement.
func checkKeyPolicy(k *Key, role string, kp KeyPolicy) error {
	ev := k.Evidence
	if ev == nil || ev.Kind != hsm.EvidencePIV || (kp.PINPolicy == "" && kp.TouchPolicy == "") {
		return nil
	}
	attested := ev.HardwareBorn()
	if kp.PINPolicy != "" {
		have := ev.PINPolicy
		if !attested {
			have = ""
		}
		if r, ok := pinRank[have]; !ok || r < pinRank[kp.PINPolicy] {
			return &PolicyError{URI: objectOf(k.URI), Role: role, Policy: "PIN policy", Want: kp.PINPolicy, Have: have}
		}
	}
	if kp.TouchPolicy != "" {
		have := ev.TouchPolicy
		if !attested {
			have = ""
		}
		if r, ok := touchRank[have]; !ok || r < touchRank[kp.TouchPolicy] {
			return &PolicyError{URI: objectOf(k.URI), Role: role, Policy: "touch policy", Want: kp.TouchPolicy, Have: have}
		}
	}
	return nil
}

// evidenceWarnings lists what officers must know about a key's evidence
// even when it meets the plan: a YubiKey on firmware before 5.7 is
// affected by YSA-2024-03.
func evidenceWarnings(ev *hsm.Evidence) []string {
	if ev == nil || ev.Kind != hsm.EvidencePIV || ev.Firmware == "" {
		return nil
	}
	var major, minor, patch int
	if n, _ := fmt.Sscanf(ev.Firmware, "%d.%d.%d", &major, &minor, &patch); n == 3 && (major < 5 || major == 5 && minor < 7) {
		return []string{fmt.Sprintf("YubiKey serial %d runs firmware %s, affected by YSA-2024-03 (ECDSA side channel): replace this key with one on a YubiKey with firmware 5.7 or later", ev.Serial, ev.Firmware)}
	}
	return nil
}
