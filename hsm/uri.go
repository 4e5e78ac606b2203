package hsm

import (
	"fmt"
	"net/url"
	"strings"
)

// URI names a token, a device or a key in it.
//
// Its syntax is RFC 7512's for every scheme rootkeeper knows:
//
//	pkcs11:token=root-a;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/run/pin
//	yubikey:serial=12345678;slot=9c?pin-source=/run/pin
//
// Path attributes (before "?", separated by ";") say which object is meant;
// query attributes (after "?", separated by "&") say how to reach it. Values
// are percent-decoded. An attribute may appear only once. The attributes of
// the pkcs11 and yubikey schemes are checked when the URI is parsed
// ([KnownAttributes]): an unknown one is refused, never ignored. The
// pin-value attribute is refused in any case: a PIN written in a URI ends
// up in shell history and in argv, where every process on the machine can
// read it.
type URI struct {
	// Scheme is "pkcs11" or "yubikey" (lower case).
	Scheme string
	path   []attr
	query  []attr
}

type attr struct{ name, value string }

// URIError reports a URI that cannot be parsed.
type URIError struct {
	URI    string // the text as given, with what might be a PIN masked (see [Redact])
	Reason string
}

func (e *URIError) Error() string { return fmt.Sprintf("invalid key URI %q: %s", e.URI, e.Reason) }

// Hint says how to write a valid URI.
func (e *URIError) Hint() string {
	return "write keys as pkcs11:token=LABEL;object=LABEL?pin-source=FILE or yubikey:serial=N;slot=9c; see docs/uri.md"
}

// ParseURI parses s as an RFC 7512 style key URI and checks its
// attributes against the scheme's (see [KnownAttributes]): an unknown
// attribute, one in the wrong part of the URI, a value rootkeeper cannot
// honour, and pin-value in any case are refused, naming the attribute.
// The error never repeats a value that might be a PIN (see [Redact]).
func ParseURI(s string) (*URI, error) {
	fail := func(format string, a ...any) (*URI, error) {
		return nil, &URIError{URI: Redact(s), Reason: fmt.Sprintf(format, a...)}
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" {
		return fail("missing scheme (pkcs11: or yubikey:)")
	}
	scheme = strings.ToLower(scheme)
	for _, r := range scheme {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '+' || r == '.') {
			return fail("invalid scheme %q", showName(scheme))
		}
	}
	u := &URI{Scheme: scheme}
	pathPart, queryPart, hasQuery := strings.Cut(rest, "?")
	var err error
	if u.path, err = parseAttrs(pathPart, ";"); err != nil {
		return fail("path: %v", err)
	}
	if hasQuery {
		if u.query, err = parseAttrs(queryPart, "&"); err != nil {
			return fail("query: %v", err)
		}
	}
	for _, a := range append(append([]attr{}, u.path...), u.query...) {
		if strings.EqualFold(normalName(a.name), "pin-value") {
			return fail("%s is not accepted: a PIN in a URI leaks through argv and shell history", showName(a.name))
		}
	}
	if err := duplicates(u.path); err != nil {
		return fail("path: %v", err)
	}
	if err := duplicates(u.query); err != nil {
		return fail("query: %v", err)
	}
	if err := checkAttrs(u); err != nil {
		return fail("%v", err)
	}
	return u, nil
}

func parseAttrs(s, sep string) ([]attr, error) {
	if s == "" {
		return nil, nil
	}
	var out []attr
	for _, part := range strings.Split(s, sep) {
		if part == "" {
			return nil, fmt.Errorf("empty attribute")
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			// The text may be a PIN typed without a name: name it only
			// when it is a known attribute.
			if isKnownName(part) {
				return nil, fmt.Errorf("attribute %q has no value", part)
			}
			return nil, fmt.Errorf("an attribute has no value (%s)", notShown)
		}
		if name == "" {
			return nil, fmt.Errorf("attribute with an empty name")
		}
		for _, r := range name {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return nil, fmt.Errorf("invalid attribute name %q", showName(name))
			}
		}
		v, err := url.PathUnescape(value)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: bad percent-encoding", showName(name))
		}
		out = append(out, attr{name: name, value: v})
	}
	return out, nil
}

func duplicates(attrs []attr) error {
	seen := map[string]bool{}
	for _, a := range attrs {
		if seen[a.name] {
			return fmt.Errorf("attribute %q appears twice", showName(a.name))
		}
		seen[a.name] = true
	}
	return nil
}

// Path returns the value of the path attribute name.
func (u *URI) Path(name string) (string, bool) { return lookup(u.path, name) }

// Query returns the value of the query attribute name.
func (u *URI) Query(name string) (string, bool) { return lookup(u.query, name) }

// PathNames lists the path attribute names in the order they were written.
func (u *URI) PathNames() []string { return names(u.path) }

// QueryNames lists the query attribute names in the order they were written.
func (u *URI) QueryNames() []string { return names(u.query) }

func lookup(attrs []attr, name string) (string, bool) {
	for _, a := range attrs {
		if a.name == name {
			return a.value, true
		}
	}
	return "", false
}

func names(attrs []attr) []string {
	out := make([]string, len(attrs))
	for i, a := range attrs {
		out[i] = a.name
	}
	return out
}

// SetPath sets (or adds) a path attribute.
func (u *URI) SetPath(name, value string) { u.path = set(u.path, name, value) }

// SetQuery sets (or adds) a query attribute.
func (u *URI) SetQuery(name, value string) { u.query = set(u.query, name, value) }

// DelQuery removes a query attribute.
func (u *URI) DelQuery(name string) {
	out := u.query[:0]
	for _, a := range u.query {
		if a.name != name {
			out = append(out, a)
		}
	}
	u.query = out
}

func set(attrs []attr, name, value string) []attr {
	for i := range attrs {
		if attrs[i].name == name {
			attrs[i].value = value
			return attrs
		}
	}
	return append(attrs, attr{name, value})
}

// Clone returns an independent copy of u.
func (u *URI) Clone() *URI {
	return &URI{
		Scheme: u.Scheme,
		path:   append([]attr(nil), u.path...),
		query:  append([]attr(nil), u.query...),
	}
}

// String formats u with its path and query attributes.
func (u *URI) String() string {
	s := u.Object()
	if len(u.query) > 0 {
		s += "?" + join(u.query, "&", true)
	}
	return s
}

// Object formats u without its query: the name of the token or key alone,
// independent of where the module is installed or where the PIN comes from.
func (u *URI) Object() string { return u.Scheme + ":" + join(u.path, ";", false) }

func join(attrs []attr, sep string, query bool) string {
	parts := make([]string, len(attrs))
	for i, a := range attrs {
		parts[i] = a.name + "=" + escape(a.value, query)
	}
	return strings.Join(parts, sep)
}

// escape percent-encodes everything outside RFC 7512's unreserved set and
// the few characters it allows unescaped in values ("/" only in the query).
func escape(s string, query bool) string {
	allowed := "-._~:[]@!$'()*+,"
	if query {
		allowed += "/|"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte(allowed, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
