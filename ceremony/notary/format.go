// Package notary reads and verifies a Notary v1 (Docker Content Trust)
// trust collection by Notary's own rules, for rootkeeper's import: the
// root certificate pinned by the officer (CN matching the GUN, not
// expired, not SHA-1), the root rotation chain, every role's threshold of
// valid signatures by keys whose ids are recomputed over Notary's
// canonical key form, the hashes that bind timestamp → snapshot → root,
// targets and delegations, and expiry.
//
// Notary v1 is TUF-like but not TUF 1.0 (github.com/theupdateframework/notary
// v0.7.0, tuf/data and tuf/signed): "_type" is capitalised ("Root"), there
// is no spec_version, keys are "ecdsa", "ecdsa-x509", "rsa", "rsa-x509" and
// "ed25519" with base64 "keyval.public" (a PEM certificate for the x509
// types, DER SubjectPublicKeyInfo for ecdsa and rsa, the raw key for
// ed25519), signatures carry a "method" ("ecdsa": raw r‖s over SHA-256,
// "eddsa", "rsapss", "rsapkcs1v15") and are base64 like the hashes, and
// delegated roles are named under "targets/" ("targets/releases").
//
// The package uses the standard library only; it never imports notary.
package notary

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Notary's role names.
const (
	RoleRoot      = "root"
	RoleTargets   = "targets"
	RoleSnapshot  = "snapshot"
	RoleTimestamp = "timestamp"
)

var baseRoles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

// tufTypes are the "_type" values (tuf/data/types.go TUFTypes).
var tufTypes = map[string]string{RoleRoot: "Root", RoleTargets: "Targets", RoleSnapshot: "Snapshot", RoleTimestamp: "Timestamp"}

// envelope is a metadata file: the signed part kept as raw bytes (the
// signatures are over its canonical form) and the signatures.
type envelope struct {
	Signed     json.RawMessage `json:"signed"`
	Signatures []signature     `json:"signatures"`
}

type signature struct {
	KeyID     string `json:"keyid"`
	Method    string `json:"method"`
	Signature []byte `json:"sig"` // base64
}

type common struct {
	Type    string    `json:"_type"`
	Expires time.Time `json:"expires"`
	Version int       `json:"version"`
}

type key struct {
	Type  string `json:"keytype"`
	Value struct {
		Public []byte `json:"public"` // base64
	} `json:"keyval"`
}

type roleKeys struct {
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
}

type root struct {
	common
	Keys               map[string]*key      `json:"keys"`
	Roles              map[string]*roleKeys `json:"roles"`
	ConsistentSnapshot bool                 `json:"consistent_snapshot"`
}

type fileMeta struct {
	Length int64             `json:"length"`
	Hashes map[string][]byte `json:"hashes"` // base64
	Custom json.RawMessage   `json:"custom,omitempty"`
}

type delegation struct {
	roleKeys
	Name  string   `json:"name"`
	Paths []string `json:"paths"`
}

type targets struct {
	common
	Targets     map[string]fileMeta `json:"targets"`
	Delegations struct {
		Keys  map[string]*key `json:"keys"`
		Roles []delegation    `json:"roles"`
	} `json:"delegations"`
}

type snapshot struct {
	common
	Meta map[string]fileMeta `json:"meta"`
}

func parseEnvelope(role string, raw []byte) (*envelope, error) {
	var e envelope
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("not Notary metadata: %v", err)
	}
	if len(e.Signed) == 0 || string(e.Signed) == "null" {
		return nil, fmt.Errorf("%s has an empty payload", role)
	}
	for i := range e.Signatures {
		e.Signatures[i].Method = strings.ToLower(e.Signatures[i].Method) // Signature.UnmarshalJSON
	}
	return &e, nil
}

func checkCommon(role string, c common) error {
	typeRole := role
	if IsDelegation(role) {
		typeRole = RoleTargets
	}
	if c.Type != tufTypes[typeRole] {
		return fmt.Errorf("expected type %s, not %q", tufTypes[typeRole], c.Type)
	}
	if c.Version < 1 {
		return fmt.Errorf("version %d: it cannot be less than 1", c.Version)
	}
	return nil
}

// parseRoot checks the structure of a root (isValidRootStructure).
func parseRoot(raw json.RawMessage) (*root, error) {
	var r root
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	if err := checkCommon(RoleRoot, r.common); err != nil {
		return nil, err
	}
	for _, name := range baseRoles {
		rk := r.Roles[name]
		if rk == nil {
			return nil, fmt.Errorf("missing %s role specification", name)
		}
		if err := checkRoleKeys(name, *rk, r.Keys); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

func checkRoleKeys(name string, rk roleKeys, keys map[string]*key) error {
	if rk.Threshold < 1 {
		return fmt.Errorf("invalid threshold %d for %s", rk.Threshold, name)
	}
	for _, id := range rk.KeyIDs {
		if keys[id] == nil {
			return fmt.Errorf("key id %s is listed for %s without a key", short(id), name)
		}
	}
	return nil
}

// parseTargets checks the structure of targets or a delegated role
// (isValidTargetsStructure).
func parseTargets(role string, raw json.RawMessage) (*targets, error) {
	var t targets
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, err
	}
	if err := checkCommon(role, t.common); err != nil {
		return nil, err
	}
	for _, d := range t.Delegations.Roles {
		if !IsDelegation(d.Name) || path.Dir(d.Name) != role {
			return nil, fmt.Errorf("delegation role %q is invalid here", d.Name)
		}
		if err := checkRoleKeys(d.Name, d.roleKeys, t.Delegations.Keys); err != nil {
			return nil, err
		}
	}
	return &t, nil
}

// parseSnapshot checks a snapshot or timestamp: a sha256 for each file
// that must be listed (root and targets; snapshot), valid hash sizes.
func parseSnapshot(role string, raw json.RawMessage) (*snapshot, error) {
	var s snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	if err := checkCommon(role, s.common); err != nil {
		return nil, err
	}
	need := []string{RoleRoot, RoleTargets}
	if role == RoleTimestamp {
		need = []string{RoleSnapshot}
	}
	for _, f := range need {
		if _, ok := s.Meta[f].Hashes["sha256"]; !ok {
			return nil, fmt.Errorf("missing %s sha256 checksum information", f)
		}
		if err := checkHashSizes(s.Meta[f].Hashes); err != nil {
			return nil, fmt.Errorf("invalid %s checksum information: %v", f, err)
		}
	}
	return &s, nil
}

var hashSizes = map[string]int{"sha256": 32, "sha512": 64}

// checkHashSizes is CheckValidHashStructures.
func checkHashSizes(h map[string][]byte) error {
	n := 0
	for alg, v := range h {
		if size, ok := hashSizes[alg]; ok {
			if len(v) != size {
				return fmt.Errorf("%s checksum has %d bytes", alg, len(v))
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("no sha256 or sha512 hash")
	}
	return nil
}

var delegationRE = regexp.MustCompile(`^[-a-z0-9_/]+$`)

// IsDelegation reports whether name is a valid Notary delegation name
// (tuf/data/roles.go IsDelegation): under targets/, lower-case letters,
// digits, - _ /, clean, shorter than 256.
func IsDelegation(name string) bool {
	return strings.HasPrefix(name, RoleTargets+"/") && delegationRE.MatchString(name) && len(name) < 256 && path.Clean(name) == name
}

// canonical returns the canonical JSON Notary signs: the payload decoded
// into generic values and encoded with sorted keys, no whitespace, only
// '"' and '\' escaped in strings, and numbers as integers (docker/go's
// canonical/json, as signed.VerifySignatures does).
func canonical(raw json.RawMessage) ([]byte, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := encodeCanonical(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func encodeCanonical(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) || math.Floor(x) != x {
			return fmt.Errorf("%v is not an integer: canonical JSON has none", x)
		}
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case string:
		canonicalString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeCanonical(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			canonicalString(b, k)
			b.WriteByte(':')
			if err := encodeCanonical(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	}
	return nil
}

func canonicalString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
