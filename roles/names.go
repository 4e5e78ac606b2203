package roles

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// MaxRoleName is the longest role name rootkeeper accepts: the file
// "<version>.<name>.json" stays far below the 255 bytes file systems allow.
const MaxRoleName = 100

// Role names are used as they are in file names (metadata/<name>.json,
// metadata/<version>.<name>.json) and, escaped, in URLs. go-tuf escapes
// them with url.PathEscape, tuf-js with encodeURIComponent, and a static
// web server decodes the request before it looks the file up: a name that
// needs escaping ("a/b" → "3.a%2Fb.json") reaches a different file or
// none. CheckRoleName allows only what needs no escaping anywhere and reads
// the same everywhere: ASCII letters, digits, '.', '_' and '-', starting
// with a letter (no look-alikes, no invisible or right-to-left characters,
// and no name like "1.root" whose file is another role's). On top of that
// it refuses:
//   - the top-level role names in any letter case;
//   - the Windows device names (CON, PRN, AUX, NUL, COM0-9, LPT0-9) as the
//     part before the first dot: such files cannot be served from Windows;
//   - names of JavaScript's Object.prototype ("constructor", "toString",
//     …): tuf-js keeps its trusted roles in a plain object and takes the
//     inherited property for a loaded role, so it never loads the role.
var (
	jsObjectNames = map[string]bool{
		"constructor": true, "hasOwnProperty": true, "isPrototypeOf": true, "propertyIsEnumerable": true,
		"toLocaleString": true, "toString": true, "valueOf": true,
	}
	windowsDevices = map[string]bool{"con": true, "prn": true, "aux": true, "nul": true}
)

// CheckRoleName reports why name cannot be a delegated role (or the name
// prefix of hashed bins), or nil. The error names the first rule it
// breaks.
func CheckRoleName(name string) error {
	if name == "" {
		return errors.New("the role name is empty")
	}
	if len(name) > MaxRoleName {
		return fmt.Errorf("role name %.20q… is %d bytes: at most %d are allowed", name, len(name), MaxRoleName)
	}
	for i, c := range []byte(name) {
		letter := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		ok := letter || (i > 0 && ((c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
		if !ok {
			return fmt.Errorf("role name %q is not allowed: %s; use an ASCII letter, then ASCII letters, digits, '.', '_' or '-'", name, nameCharProblem(name, i))
		}
	}
	if isTopLevel(name) {
		return fmt.Errorf("role name %q is a top-level role name", name)
	}
	base, _, _ := strings.Cut(strings.ToLower(name), ".")
	if windowsDevices[base] || (len(base) == 4 && (strings.HasPrefix(base, "com") || strings.HasPrefix(base, "lpt")) && base[3] >= '0' && base[3] <= '9') {
		return fmt.Errorf("role name %q is not allowed: %s.json is a device name on Windows, where no server can serve it", name, base)
	}
	if jsObjectNames[name] {
		return fmt.Errorf("role name %q is not allowed: tuf-js clients take it for a built-in JavaScript property and never load the role", name)
	}
	return nil
}

// nameCharProblem describes the character at byte i of name.
func nameCharProblem(name string, i int) string {
	c := name[i]
	switch {
	case c >= 0x80:
		r := []rune(name[i:])[0]
		return fmt.Sprintf("it contains %U, not ASCII (look-alike, invisible and right-to-left characters make names that read as another)", r)
	case c == '/' || c == '%' || c == '?' || c == '#' || c == '\\':
		return fmt.Sprintf("%q needs escaping in a URL, and a static web server decodes it (\"a/b\" → \"a%%2Fb.json\", which clients never get)", string(c))
	case c < 0x20 || c == 0x7f:
		return fmt.Sprintf("it contains the control character %U", rune(c))
	case i == 0:
		return "it must start with an ASCII letter"
	}
	return fmt.Sprintf("%q is not among the characters allowed", string(c))
}

// checkPathPattern reports a delegation path pattern that go-tuf and
// tuf-js read differently, or that matches nothing. go-tuf matches each
// '/'-separated part with Go's filepath.Match, tuf-js with minimatch:
// they agree on literal characters, '*' and '?' only. Brackets, braces,
// parentheses and backslashes mean different things to each ('[!a]',
// '{a,b}', '+(a)', escapes), and minimatch takes a leading '!' as a
// negation and a leading '#' as a comment.
func checkPathPattern(p string) error {
	if p == "" || strings.HasPrefix(p, "/") {
		return fmt.Errorf("path pattern %q is not allowed: patterns are relative to targets/, like \"releases/*\"", p)
	}
	if i := strings.IndexAny(p, `[]{}()\`); i >= 0 {
		return fmt.Errorf("path pattern %q is not allowed: %q means different things to go-tuf (Go's filepath.Match) and tuf-js (minimatch); use only literal characters, '*' and '?'", p, p[i:i+1])
	}
	if strings.HasPrefix(p, "!") || strings.HasPrefix(p, "#") {
		return fmt.Errorf("path pattern %q is not allowed: tuf-js (minimatch) reads a leading %q as a negation or a comment, go-tuf as a literal", p, p[:1])
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("path pattern %q is not allowed: it has an empty, \".\" or \"..\" part, which no clean target path has", p)
		}
	}
	return nil
}

// checkTargetPath accepts a clean relative path with '/' separators that
// both clients fetch as it is: no '?', '#' or '%' (a URL's query,
// fragment and escape: clients put the path into the URL unescaped), no
// backslash and no control character.
func checkTargetPath(p string) error {
	if p == "" || p == "." || strings.Contains(p, `\`) || path.Clean(p) != p || strings.HasPrefix(p, "/") ||
		p == ".." || strings.HasPrefix(p, "../") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("target path %q is not a clean relative path (like \"releases/v1/app.tar.gz\")", p)
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." {
			return fmt.Errorf("target path %q leaves targets/", p)
		}
	}
	if i := strings.IndexAny(p, "?#%"); i >= 0 {
		return fmt.Errorf("target path %q contains %q: clients put the path into the URL as it is, where it starts a query, a fragment or an escape, so they fetch another file or none", p, p[i:i+1])
	}
	for _, c := range []byte(p) {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("target path %q contains the control character %U", p, rune(c))
		}
	}
	return nil
}

// patternMatchesJS is whether tuf-js (minimatch, as tuf-js calls it: one
// pattern part against one path part) matches part with pat, for a
// pattern checkPathPattern accepts and a part that Go's filepath.Match
// already matched: minimatch's '*' and '?' never match a leading '.'.
func patternMatchesJS(pat, part string) bool {
	return !strings.HasPrefix(part, ".") || strings.HasPrefix(pat, ".")
}
