package runbooks

import (
	"fmt"
	"regexp"
	"strings"
)

// What differs from run to run, and so is a wildcard in an excerpt:
//
//   - "…" stands for any text (a whole line of it: any number of lines);
//   - a date or date and time (2027-11-25, 2027-11-25T01:42:17Z,
//     2027-11-25 01:42, with or without seconds and fraction) stands for any;
//   - percent-encoded bytes (id=%F4%93…) stand for any;
//   - a run of 8 or more lower-case hex digits with at least one digit
//     (key ids and their 12-digit prefixes, token serials, the PUK) stands
//     for the value the run printed there. The first time a value is seen
//     it is bound to what was printed; afterwards the same value, or a
//     prefix of it, must be printed again exactly, and it is replaced by
//     what was printed in later commands, files and answers.
var (
	tokenRe = regexp.MustCompile(`…|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?)?|(?:%[0-9A-F]{2})+|\b[0-9a-f]{8,}\b`)
	hexRe   = regexp.MustCompile(`\b[0-9a-f]{8,}\b`)
	spaceRe = regexp.MustCompile(`\s+`)
	dateRx  = `\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?)?`
)

// isValue reports whether a hex-looking word is a value (it has a digit:
// "deadbeef" and "facade00"-like words in prose stay literal only if all
// letters, which no key id or serial is in practice).
func isValue(w string) bool { return strings.ContainsAny(w, "0123456789") }

// Bindings maps values shown in a runbook to the values the run printed.
type Bindings struct {
	m map[string]string
}

// NewBindings returns empty bindings.
func NewBindings() *Bindings { return &Bindings{m: map[string]string{}} }

// Bind records that the runbook's value doc is actual in this run.
func (b *Bindings) Bind(doc, actual string) { b.m[doc] = actual }

// known returns what the run printed for doc, or for the longest bound
// value that doc is a prefix of, or that is a prefix of doc: exact is
// true when the whole of doc is known.
func (b *Bindings) known(doc string) (actual string, exact bool) {
	if a, ok := b.m[doc]; ok {
		return a, true
	}
	best, bestExact := "", false
	for d, a := range b.m {
		switch {
		case strings.HasPrefix(d, doc) && len(a) >= len(doc):
			if !bestExact || len(doc) > len(best) {
				best, bestExact = a[:len(doc)], true
			}
		case strings.HasPrefix(doc, d) && !bestExact && len(a) > len(best):
			best = a
		}
	}
	return best, bestExact
}

// Subst replaces every value of s that the run has printed by what it
// printed.
func (b *Bindings) Subst(s string) string {
	return hexRe.ReplaceAllStringFunc(s, func(w string) string {
		if !isValue(w) {
			return w
		}
		if a, exact := b.known(w); exact {
			return a
		}
		return w
	})
}

// pattern compiles one excerpt line into a regular expression over a
// normalized output line, with one group per unbound value.
func (b *Bindings) pattern(line string) (*regexp.Regexp, []string) {
	line = normalize(line)
	// Ctrl-C typed at a prompt with the echo off is not shown.
	line, ctrlC := strings.CutSuffix(line, " ^C")
	var rx strings.Builder
	var groups []string
	rx.WriteString("^")
	last := 0
	for _, loc := range tokenRe.FindAllStringIndex(line, -1) {
		rx.WriteString(regexp.QuoteMeta(line[last:loc[0]]))
		tok := line[loc[0]:loc[1]]
		last = loc[1]
		switch {
		case tok == "…":
			rx.WriteString(".*?")
		case tok[0] == '%':
			rx.WriteString(`(?:%[0-9A-F]{2})+`)
		case tok[0] >= '0' && tok[0] <= '9' && len(tok) >= 10 && tok[4] == '-' && tok[7] == '-':
			rx.WriteString(dateRx)
		case !isValue(tok):
			rx.WriteString(regexp.QuoteMeta(tok))
		default:
			a, exact := b.known(tok)
			switch {
			case exact:
				rx.WriteString(regexp.QuoteMeta(a))
			case a != "":
				rx.WriteString("(" + regexp.QuoteMeta(a) + "[0-9a-f]*)")
				groups = append(groups, tok)
			default:
				rx.WriteString("([0-9a-f]+)")
				groups = append(groups, tok)
			}
		}
	}
	rx.WriteString(regexp.QuoteMeta(line[last:]))
	if ctrlC {
		rx.WriteString(`(?: ?\^C)?`)
	}
	rx.WriteString("$")
	return regexp.MustCompile(rx.String()), groups
}

// MatchLine reports whether an output line is what the excerpt line
// shows, and binds the values it shows on success.
func (b *Bindings) MatchLine(expect, got string) bool {
	rx, groups := b.pattern(expect)
	m := rx.FindStringSubmatch(normalize(got))
	if m == nil {
		return false
	}
	for i, doc := range groups {
		b.Bind(doc, m[i+1])
	}
	return true
}

// Check checks that every line of the excerpt appears in the output, in
// the excerpt's order (lines the excerpt leaves out may come anywhere). It
// returns the first excerpt line that could not be found.
func (b *Bindings) Check(expect []string, output string) error {
	got := strings.Split(output, "\n")
	pos := 0
	for _, e := range expect {
		if strings.TrimSpace(e) == "…" {
			continue
		}
		found := false
		for ; pos < len(got); pos++ {
			if b.MatchLine(e, got[pos]) {
				found = true
				pos++
				break
			}
		}
		if !found {
			return fmt.Errorf("this line of the runbook's output is not in the output (after the lines before it):\n\t%s", e)
		}
	}
	return nil
}

// normalize trims a line and makes every run of white space one space:
// column widths are not checked.
func normalize(s string) string {
	return spaceRe.ReplaceAllString(strings.TrimSpace(s), " ")
}
