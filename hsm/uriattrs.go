package hsm

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Attributes lists the attributes a URI scheme takes: in its path (which
// object) and in its query (how to reach it).
type Attributes struct {
	Path, Query []string
	// Refused are attributes RFC 7512 defines that rootkeeper does not
	// honour, with the reason, so that they are never silently ignored.
	Refused map[string]string
}

// slotReason is why rootkeeper refuses the slot attributes.
const slotReason = "rootkeeper never selects a token by its slot (SoftHSM and card readers renumber slots): name the token with token= (and serial= when labels repeat)"

// KnownAttributes are the attributes of each URI scheme rootkeeper knows.
// [ParseURI] refuses every other attribute of these schemes.
var KnownAttributes = map[string]Attributes{
	"pkcs11": {
		Path: []string{"token", "serial", "manufacturer", "model", "object", "id", "type",
			"library-manufacturer", "library-description", "library-version"},
		Query: []string{"module-path", "module-name", "pin-source"},
		Refused: map[string]string{
			"slot-id":           slotReason,
			"slot-description":  slotReason,
			"slot-manufacturer": slotReason,
		},
	},
	"yubikey": {
		Path:  []string{"serial", "slot"},
		Query: []string{"pin-source", "management-key-source"},
	},
}

// SecretSources are the query attributes that name a file holding a
// secret (a PIN, a management key). Their values are shown only when they
// look like an absolute path (see [ShowSource]).
var SecretSources = []string{"pin-source", "management-key-source"}

// notShown stands for a value that is not printed because it might be a PIN.
const notShown = "not shown: it might be a PIN"

// normalName maps a misspelt attribute name to the form attributes are
// written in: lower case, "-" for "_".
func normalName(n string) string { return strings.ReplaceAll(strings.ToLower(n), "_", "-") }

// isKnownName reports whether n (in any spelling) is an attribute of some
// scheme, so that printing it cannot print a PIN.
func isKnownName(n string) bool {
	n = normalName(n)
	if n == "pin-value" {
		return true
	}
	for _, a := range KnownAttributes {
		if slices.Contains(a.Path, n) || slices.Contains(a.Query, n) || a.Refused[n] != "" {
			return true
		}
	}
	return false
}

// showName returns an attribute name for a message: as written when it is
// made of letters, digits and dashes and is not all digits (a PIN typed
// where a name was expected), else a placeholder.
func showName(n string) string {
	if n == "" || len(n) > 40 {
		return "(" + notShown + ")"
	}
	letters := false
	for _, r := range n {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letters = true
		case r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '+':
		default:
			return "(" + notShown + ")"
		}
	}
	if !letters {
		return "(" + notShown + ")"
	}
	return n
}

// checkAttrs checks u's attributes against its scheme's.
func checkAttrs(u *URI) error {
	spec, ok := KnownAttributes[u.Scheme]
	if !ok {
		registryMu.Lock()
		_, registered := registry[u.Scheme]
		registryMu.Unlock()
		if registered {
			return nil // a backend of its own, which checks its attributes
		}
		return fmt.Errorf("unknown scheme %q: rootkeeper keys are pkcs11: or yubikey: URIs", showName(u.Scheme))
	}
	for _, part := range []struct {
		where, other string
		attrs        []attr
		names, alt   []string
	}{
		{"path", "query (after ?)", u.path, spec.Path, spec.Query},
		{"query", "path (before ?)", u.query, spec.Query, spec.Path},
	} {
		for _, a := range part.attrs {
			if slices.Contains(part.names, a.name) {
				continue
			}
			if why := spec.Refused[a.name]; why != "" {
				return fmt.Errorf("%s is not accepted: %s", a.name, why)
			}
			if slices.Contains(part.alt, a.name) {
				return fmt.Errorf("%s belongs in the %s, not in the %s", a.name, part.other, part.where)
			}
			msg := fmt.Sprintf("unknown %s attribute %q", part.where, showName(a.name))
			if n := normalName(a.name); n != a.name && (slices.Contains(part.names, n) || slices.Contains(part.alt, n)) {
				msg += fmt.Sprintf(" (did you mean %s?)", n)
			}
			return fmt.Errorf("%s: %s: URIs take %s in the %s", msg, u.Scheme, strings.Join(part.names, ", "), part.where)
		}
	}
	return checkValues(u)
}

// checkValues checks the values rootkeeper can check without a device.
func checkValues(u *URI) error {
	if v, ok := u.Path("type"); ok && v != "private" {
		return fmt.Errorf("type=%s: a rootkeeper key is a private key and its public key: write type=private or leave type out", showName(v))
	}
	if v, ok := u.Path("library-version"); ok {
		if _, _, err := ParseLibraryVersion(v); err != nil {
			return err
		}
	}
	_, hasPath := u.Query("module-path")
	_, hasName := u.Query("module-name")
	if hasPath && hasName {
		return fmt.Errorf("module-path and module-name both name the module: give only one")
	}
	for _, name := range SecretSources {
		if v, ok := u.Query(name); ok {
			if _, err := SourcePath(v, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseLibraryVersion reads an RFC 7512 library-version: "M" or "M.N".
func ParseLibraryVersion(v string) (major, minor byte, err error) {
	bad := fmt.Errorf("library-version=%q: write the module's version as MAJOR or MAJOR.MINOR (e.g. 2.6), as C_GetInfo reports it", v)
	ma, mi, hasMinor := strings.Cut(v, ".")
	m, err1 := strconv.ParseUint(ma, 10, 8)
	n := uint64(0)
	var err2 error
	if hasMinor {
		n, err2 = strconv.ParseUint(mi, 10, 8)
	}
	if err1 != nil || err2 != nil || ma == "" || hasMinor && mi == "" {
		return 0, 0, bad
	}
	return byte(m), byte(n), nil
}
