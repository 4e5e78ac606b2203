package roles

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// The rules in this file are those where go-tuf's trustedmetadata (which
// Verify replays) accepts what tuf-js refuses or reads otherwise, and
// those where both accept a repository whose roles or targets no client
// can reach. docs/client-rules.md lists them with the client code they
// come from.

// specRE is the spec_version tuf-js accepts (two or three numeric parts,
// major version 1), narrowed to plain digits.
var specRE = regexp.MustCompile(`^1\.[0-9]+(\.[0-9]+)?$`)

// checkVersionMin reports a version below 1 (clients compare versions as
// positive integers; tuf-js refuses a listed version below 1).
func (v *verifier) checkVersionMin(role, file, label string, version int64) {
	if version < 1 {
		v.add(role, file, RuleNumber, fmt.Sprintf("%s: version %d: versions start at 1", label, version), "")
	}
}

// checkDelegationRules checks what a targets role delegates: role names
// (CheckRoleName, once each, no two in one list), path patterns both
// clients read alike, no path_hash_prefixes (go-tuf compares them with the
// base64 of the path's hash, tuf-js with its hex: they pick different
// roles), and a hashed-bin bit length tuf-js accepts (1 to 32).
func (v *verifier) checkDelegationRules(role, file string, dl *metadata.Delegations) {
	seen := map[string]bool{}
	for _, d := range dl.Roles {
		if err := CheckRoleName(d.Name); err != nil && !isTopLevel(d.Name) {
			v.add(role, file, RuleRoleName, fmt.Sprintf("%s: delegates to %q: %v", role, d.Name, err),
				"rename the role: remove the delegation and delegate again under a name that passes (rootkeeper delegate add checks it)")
		}
		if seen[d.Name] {
			v.add(role, file, RuleDelegation, fmt.Sprintf("%s: delegates to %q twice: tuf-js refuses the file (go-tuf uses the first)", role, d.Name), "remove one of the two")
		}
		seen[d.Name] = true
		if len(d.PathHashPrefixes) > 0 {
			v.add(role, file, RuleDelegation, fmt.Sprintf("%s: delegation %q uses path_hash_prefixes: go-tuf matches them against the base64 of a path's hash, tuf-js against its hex, so they look targets up in different roles", role, d.Name),
				"use hashed bins (succinct_roles, rootkeeper delegate add --bins N) or paths")
		}
		for _, p := range d.Paths {
			if err := checkPathPattern(p); err != nil {
				v.add(role, file, RuleTargetPath, fmt.Sprintf("%s: delegation %q: %v", role, d.Name, err), "delegate with patterns of literal characters, '*' and '?'")
			}
		}
	}
	if sr := dl.SuccinctRoles; dl.Roles == nil && sr != nil {
		if err := CheckRoleName(sr.NamePrefix); err != nil {
			v.add(role, file, RuleRoleName, fmt.Sprintf("%s: hashed bins %q: %v", role, sr.NamePrefix, err), "make the bins again under a name prefix that passes")
		}
		if sr.BitLength < 1 || sr.BitLength > 32 {
			v.add(role, file, RuleDelegation, fmt.Sprintf("%s: hashed bins %q: bit_length %d: tuf-js accepts 1 to 32", role, sr.NamePrefix, sr.BitLength), "")
		}
	}
}

// checkTargetEntries checks the targets a role lists: paths both clients
// fetch as they are, lengths not negative, and hashes go-tuf can check
// (it refuses a target listing no hash or any algorithm but sha256 and
// sha512; tuf-js takes whatever Node.js knows).
func (v *verifier) checkTargetEntries(role, file string, targets map[string]*metadata.TargetFiles) {
	var badPath, badHash []string
	for _, p := range slices.Sorted(maps.Keys(targets)) {
		tf := targets[p]
		if err := checkTargetPath(p); err != nil {
			badPath = append(badPath, err.Error())
		}
		if tf == nil {
			continue
		}
		if tf.Length < 0 {
			v.add(role, file, RuleNumber, fmt.Sprintf("%s: target %q has length %d: lengths cannot be negative", role, p, tf.Length), "")
		}
		if len(tf.Hashes) == 0 {
			badHash = append(badHash, fmt.Sprintf("target %q lists no hash", p))
		}
		for _, alg := range slices.Sorted(maps.Keys(tf.Hashes)) {
			if alg != "sha256" && alg != "sha512" {
				badHash = append(badHash, fmt.Sprintf("target %q lists a %s hash", p, alg))
				break
			}
		}
	}
	if len(badPath) > 0 {
		v.add(role, file, RuleTargetPath, fmt.Sprintf("%s: %s%s", role, badPath[0], more(len(badPath)-1, "target")),
			"remove the target and add it again under a clean path of plain characters (rootkeeper targets add checks it)")
	}
	if len(badHash) > 0 {
		v.add(role, file, RuleTargetFile, fmt.Sprintf("%s: %s%s: go-tuf checks only sha256 and sha512 and refuses to download it", role, badHash[0], more(len(badHash)-1, "target")),
			"list sha256 (rootkeeper does) and no other algorithm")
	}
}

// checkNameCase reports delegated roles whose names differ only in letter
// case: on a case-insensitive file system or server (macOS, Windows) they
// are one file, so clients get the other role's metadata.
func (v *verifier) checkNameCase() {
	byLower := map[string]string{}
	for _, d := range v.s.delegated {
		l := strings.ToLower(d.name)
		if other, ok := byLower[l]; ok && other != d.name {
			v.add(d.name, d.path, RuleRoleName, fmt.Sprintf("roles %q and %q differ only in letter case: on a case-insensitive file system or web server (macOS, Windows) their files are one", other, d.name),
				"rename one of them (remove the delegation and delegate again)")
			continue
		}
		byLower[l] = d.name
	}
}

// more is "" or " (and 3 more targets)".
func more(n int, what string) string {
	if n <= 0 {
		return ""
	}
	if n == 1 {
		return fmt.Sprintf(" (and 1 more %s)", what)
	}
	return fmt.Sprintf(" (and %d more %ss)", n, what)
}
