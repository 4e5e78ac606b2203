package hsm

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The rule for printing what might be a PIN: rootkeeper prints the value of
// pin-source (and of every option that names a secret file) only when it
// looks like an absolute path ("/…" or "file:/…"), and never prints the
// value of pin-value, of an attribute it does not know, or text that is
// not an attribute at all. Everything else in a URI is printed as written.

// ShowSource returns src, the value of a pin-source style option, for a
// message: itself when it looks like an absolute path, else a placeholder
// that says why it is not shown (a PIN typed where a path was expected
// must not be printed).
func ShowSource(src string) string {
	if looksAbsolute(src) {
		return src
	}
	return "(the value is not shown: it does not look like an absolute path, and might be a PIN)"
}

// looksAbsolute reports whether s is printable ASCII that starts like an
// absolute path or a file: URI.
func looksAbsolute(s string) bool {
	if len(s) > 4096 {
		return false
	}
	if l := strings.ToLower(s); strings.HasPrefix(l, "file:") {
		rest := l[5:]
		if strings.HasPrefix(rest, "//") && !strings.HasPrefix(rest, "///") && !strings.HasPrefix(rest, "//localhost/") {
			return false // another host: its name is not shown
		}
		s = rest
	}
	if !strings.HasPrefix(s, "/") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Redact returns the URI text s with every value that might be a PIN
// replaced by "***": pin-value (in any case), secret sources that do not
// look like an absolute path, the values of unknown attributes, and parts
// that are not attributes. It works on text that does not parse, too.
func Redact(s string) string {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		if len(s) == 0 {
			return s
		}
		return "***"
	}
	spec, known := KnownAttributes[strings.ToLower(scheme)]
	path, query, hasQuery := strings.Cut(rest, "?")
	out := showName(strings.ToLower(scheme)) + ":" + redactPart(path, ";", spec, known)
	if hasQuery {
		out += "?" + redactPart(query, "&", spec, known)
	}
	return out
}

func redactPart(s, sep string, spec Attributes, known bool) string {
	if s == "" {
		return s
	}
	parts := strings.Split(s, sep)
	for i, p := range parts {
		name, value, ok := strings.Cut(p, "=")
		switch {
		case p == "":
		case !ok && isKnownName(p):
		case !ok:
			parts[i] = "***"
		case showName(name) != name:
			parts[i] = "***=***"
		default:
			parts[i] = name + "=" + redactValue(name, value, spec, known)
		}
	}
	return strings.Join(parts, sep)
}

func redactValue(name, value string, spec Attributes, known bool) string {
	n := normalName(name)
	if n == "pin-value" {
		return "***"
	}
	if slices.Contains(SecretSources, n) {
		if v, err := url.PathUnescape(value); err == nil && looksAbsolute(v) {
			return value
		}
		return "***"
	}
	if !known || !(slices.Contains(spec.Path, name) || slices.Contains(spec.Query, name) || spec.Refused[name] != "") {
		return "***"
	}
	return value
}

// SourcePath returns the file a pin-source style value names: an absolute
// or relative path as it is, or an RFC 8089 file: URI (file:/path,
// file:///path or file://localhost/path, percent-decoded). A file: URI
// naming another host, or without an absolute path, is refused. what
// names the option in messages. The value itself is never printed unless
// it looks like an absolute path.
func SourcePath(src, what string) (string, error) {
	fail := func(format string, a ...any) (string, error) {
		return "", &Error{Kind: ErrNoPIN, Detail: what + ": " + fmt.Sprintf(format, a...),
			HintText: "write " + what + "=/absolute/path (or file:///absolute/path) of a file readable only by you"}
	}
	if src == "" {
		return fail("the value is empty")
	}
	for i := 0; i < len(src); i++ {
		if src[i] < 0x20 || src[i] == 0x7f {
			return fail("the value contains a control character (%s)", notShown)
		}
	}
	if len(src) < 5 || !strings.EqualFold(src[:5], "file:") {
		return src, nil
	}
	rest := src[5:]
	if strings.HasPrefix(rest, "//") {
		host, p, ok := strings.Cut(rest[2:], "/")
		if !ok {
			return fail("the file: URI %s has no path", ShowSource(src))
		}
		if host != "" && !strings.EqualFold(host, "localhost") {
			return fail("the file: URI names the host %q: rootkeeper reads only local files (file:///path or file://localhost/path)", showName(host))
		}
		rest = "/" + p
	}
	if !strings.HasPrefix(rest, "/") {
		return fail("a file: URI needs an absolute path (file:///path), %s", ShowSource(src))
	}
	if strings.ContainsAny(rest, "?#") {
		return fail("the file: URI %s has a query or fragment; percent-encode ? and # in file names", ShowSource(src))
	}
	p, err := url.PathUnescape(rest)
	if err != nil {
		return fail("the file: URI %s has bad percent-encoding", ShowSource(src))
	}
	return p, nil
}
