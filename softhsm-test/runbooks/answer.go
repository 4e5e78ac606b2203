package runbooks

import (
	"strings"
)

// Responder decides what the officer types at a prompt during one step:
//
//   - a question ending in [y/N] gets the answer the excerpt shows after
//     it ("Sign and write? [y/N] y"; ^C is Ctrl-C), or y when the excerpt
//     leaves the question out;
//   - a prompt the excerpt shows followed by ^C gets Ctrl-C;
//   - any other prompt (a line ending in ":") gets the text of the first
//     rehearsal "answer" whose PROMPT it contains, typed with the echo off.
//
// Anything else is no prompt, and the command is left to go on (or to time
// out, which fails the step).
type Responder struct {
	Expect   []string
	Answers  []Answer
	Bindings *Bindings
	used     map[int]bool
}

// Answer implements Terminal.Answer.
func (r *Responder) Answer(partial string) (string, bool, bool) {
	p := normalize(partial)
	if r.used == nil {
		r.used = map[int]bool{}
	}
	if strings.HasSuffix(p, "[y/N]") {
		for i, e := range r.Expect {
			q, ans, ok := strings.Cut(normalize(e), "[y/N] ")
			if !ok || r.used[i] {
				continue
			}
			if r.Bindings.MatchLine(q+"[y/N]", p) {
				r.used[i] = true
				if ans == "^C" {
					return ctrlC, false, true
				}
				return r.Bindings.Subst(ans), false, true
			}
		}
		return "y", false, true
	}
	if !strings.HasSuffix(p, ":") {
		return "", false, false
	}
	for i, e := range r.Expect {
		e = normalize(e)
		if !strings.HasSuffix(e, ": ^C") || r.used[i] {
			continue
		}
		if r.Bindings.MatchLine(strings.TrimSuffix(e, " ^C"), p) {
			r.used[i] = true
			return ctrlC, false, true
		}
	}
	for _, a := range r.Answers {
		if strings.Contains(p, a.Prompt) {
			return r.Bindings.Subst(a.Text), true, true
		}
	}
	return "", false, false
}
