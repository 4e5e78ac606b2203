package runbooks

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Kind is what a step of a runbook does.
type Kind int

const (
	// Script is a ```sh block: run as one bash script with set -e; each
	// command must succeed, its output is not checked.
	Script Kind = iota
	// Command is a "$ " line of a ```console block: run alone; the lines
	// after it are an excerpt of what it prints.
	Command
	// File is a block with file=PATH in its info string: its text is
	// written to PATH.
	File
)

// A Step is one thing the test does, in the runbook's order.
type Step struct {
	Line      int // where it starts in the runbook, from 1
	Kind      Kind
	Text      string   // the script, the command (continuation lines kept), or the file's text
	Path      string   // File: where to write it
	Expect    []string // Command: the excerpt of its output, one line each
	Rehearsal bool     // inside a <!-- rehearsal … --> comment
}

// Card is a virtual YubiKey a rehearsal asks for.
type Card struct {
	Serial   uint32
	Firmware [3]byte // zero: the emulator's default
}

// Answer is what the test types at a prompt that contains Prompt.
type Answer struct {
	Prompt, Text string
}

// A Runbook is a parsed docs/runbook-*.md.
type Runbook struct {
	Path    string
	Steps   []Step
	Tokens  []string // "softhsm LABEL…": SoftHSM2 tokens made before the first step
	Cards   []Card   // "yubikey SERIAL [FIRMWARE]": virtual YubiKeys, in vpcd slots 0 and 1
	Answers []Answer // "answer PROMPT TEXT", in the order given
}

var (
	fenceRe   = regexp.MustCompile("^( *)(```+|~~~+)\\s*(.*)$")
	answerRe  = regexp.MustCompile(`^answer\s+"([^"]+)"\s+(\S.*)$`)
	ynRe      = regexp.MustCompile(`\[y/N\]\s*(.*)$`)
	firmwareR = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`)
)

// Parse reads a runbook and returns its steps and rehearsal directives.
// It fails on a console block that does not start with "$ ", a [y/N]
// question shown without the officer's answer, an unknown directive
// argument, an unclosed block or comment, and a runbook with no runnable
// step outside the rehearsal.
func Parse(path string) (*Runbook, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	rb := &Runbook{Path: path}
	if err := rb.parse(lines); err != nil {
		return nil, fmt.Errorf("%s:%v", path, err)
	}
	runnable := false
	for _, s := range rb.Steps {
		if !s.Rehearsal && s.Kind != File {
			runnable = true
		}
	}
	if !runnable {
		return nil, fmt.Errorf("%s: no runnable block: fence the officer's commands ```sh, or ```console with \"$ \" lines (docs/testing.md#runbooks-that-run)", path)
	}
	return rb, nil
}

func (rb *Runbook) parse(lines []string) error {
	const (
		prose = iota
		rehearsal
		comment // another HTML comment: nothing in it runs
	)
	state := prose
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		m := fenceRe.FindStringSubmatch(line)
		if m == nil || state == comment {
			trimmed := strings.TrimSpace(line)
			switch {
			case state == prose && strings.HasPrefix(trimmed, "<!--"):
				if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(trimmed, "<!--")), "rehearsal") {
					state = rehearsal
				} else {
					state = comment
				}
				if strings.HasSuffix(trimmed, "-->") {
					state = prose
				}
			case state != prose && strings.Contains(trimmed, "-->"):
				state = prose
			case state == rehearsal:
				if err := rb.directive(i+1, trimmed); err != nil {
					return err
				}
			}
			continue
		}
		indent, fence, info := len(m[1]), m[2], strings.Fields(m[3])
		start := i + 1
		var body []string
		closed := false
		for i++; i < len(lines); i++ {
			l := lines[i]
			if t := strings.TrimLeft(l, " "); strings.HasPrefix(t, fence) && strings.TrimSpace(strings.TrimLeft(t, fence[:1])) == "" {
				closed = true
				break
			}
			// Drop the fence's indentation (blocks inside list items).
			n := 0
			for n < indent && n < len(l) && l[n] == ' ' {
				n++
			}
			body = append(body, l[n:])
		}
		if !closed {
			return fmt.Errorf("%d: the block is not closed", start)
		}
		if err := rb.block(start, info, body, state == rehearsal); err != nil {
			return err
		}
	}
	if state != prose {
		return fmt.Errorf("%d: an HTML comment is not closed", len(lines))
	}
	return nil
}

// directive reads a line of a rehearsal comment outside its blocks. Lines
// that start with no directive word are prose.
func (rb *Runbook) directive(n int, line string) error {
	words := strings.Fields(line)
	if len(words) == 0 {
		return nil
	}
	switch words[0] {
	case "softhsm":
		if len(words) < 2 {
			return fmt.Errorf("%d: softhsm needs token labels", n)
		}
		rb.Tokens = append(rb.Tokens, words[1:]...)
	case "yubikey":
		if len(words) < 2 || len(words) > 3 {
			return fmt.Errorf("%d: usage: yubikey SERIAL [FIRMWARE]", n)
		}
		serial, err := strconv.ParseUint(words[1], 10, 32)
		if err != nil {
			return fmt.Errorf("%d: yubikey serial %q: %v", n, words[1], err)
		}
		c := Card{Serial: uint32(serial)}
		if len(words) == 3 {
			fw := firmwareR.FindStringSubmatch(words[2])
			if fw == nil {
				return fmt.Errorf("%d: yubikey firmware %q: write it as 5.7.1", n, words[2])
			}
			for j := range c.Firmware {
				v, _ := strconv.Atoi(fw[j+1])
				c.Firmware[j] = byte(v)
			}
		}
		if len(rb.Cards) == 2 {
			return fmt.Errorf("%d: at most two virtual YubiKeys (vpcd has two slots)", n)
		}
		rb.Cards = append(rb.Cards, c)
	case "answer":
		a := answerRe.FindStringSubmatch(line)
		if a == nil {
			return fmt.Errorf(`%d: usage: answer "PROMPT" TEXT`, n)
		}
		rb.Answers = append(rb.Answers, Answer{Prompt: a[1], Text: a[2]})
	}
	return nil
}

// block turns a fenced block into steps.
func (rb *Runbook) block(start int, info, body []string, reh bool) error {
	lang := ""
	if len(info) > 0 {
		lang = info[0]
	}
	var path string
	for _, w := range info {
		if w == "norun" {
			return nil
		}
		if p, ok := strings.CutPrefix(w, "file="); ok {
			path = p
		}
	}
	text := strings.Join(body, "\n") + "\n"
	switch {
	case path != "":
		rb.Steps = append(rb.Steps, Step{Line: start, Kind: File, Path: path, Text: text, Rehearsal: reh})
	case lang == "sh" || lang == "bash":
		rb.Steps = append(rb.Steps, Step{Line: start, Kind: Script, Text: text, Rehearsal: reh})
	case lang == "console":
		return rb.console(start, body, reh)
	}
	return nil
}

// console reads "$ command" lines (a trailing backslash continues the
// command on the next line) and the excerpt of output after each.
func (rb *Runbook) console(start int, body []string, reh bool) error {
	var cur *Step
	for j := 0; j < len(body); j++ {
		l := strings.TrimRight(body[j], " \t")
		if cmd, ok := strings.CutPrefix(l, "$ "); ok {
			rb.Steps = append(rb.Steps, Step{Line: start + 1 + j, Kind: Command, Text: cmd, Rehearsal: reh})
			cur = &rb.Steps[len(rb.Steps)-1]
			for strings.HasSuffix(cur.Text, `\`) && j+1 < len(body) {
				j++
				cur.Text += "\n" + body[j]
			}
			continue
		}
		if strings.TrimSpace(l) == "" {
			continue
		}
		if cur == nil {
			return fmt.Errorf("%d: a console block starts with the command, as \"$ command\" (or fence it ```text if nothing in it runs)", start+1+j)
		}
		if m := ynRe.FindStringSubmatch(l); m != nil && m[1] == "" {
			return fmt.Errorf("%d: show the officer's answer after [y/N] (e.g. \"[y/N] y\")", start+1+j)
		}
		cur.Expect = append(cur.Expect, l)
	}
	return nil
}
