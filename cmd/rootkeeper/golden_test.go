package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// Golden output (bins.txtar): `normalize FILE…` replaces what changes from
// run to run — times, dates, key ids, token serials, event UIDs, Unix
// times — with placeholders, so that `cmp FILE golden` compares the rest
// byte for byte. `go test ./cmd/rootkeeper -run TestScripts/bins -update`
// rewrites the golden files in the scripts.
//
// Condition [need:TOOL] is true when TOOL is installed (promtool;
// icalendar: a python3 with python3-icalendar, which $PYTHON names;
// bash-completion); with
// CI=true a missing tool is an error that fails the script
// (softhsm-test/install-deps.sh installs them).

var updateGolden = flag.Bool("update", false, "rewrite the golden files of the scripts (cmp with a file of the archive)")

var normalizers = []struct {
	re *regexp.Regexp
	to string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "TIME"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?`), "TIME"},
	{regexp.MustCompile(`\d{8}T\d{6}Z`), "STAMP"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d`), "DATE"},
	{regexp.MustCompile(`VALUE=DATE:\d{8}`), "VALUE=DATE:DATE"},
	{regexp.MustCompile(`\b[0-9a-f]{32}@rootkeeper`), "UID@rootkeeper"},
	{regexp.MustCompile(`X-ROOTKEEPER-DIGEST:[0-9a-f]{16}`), "X-ROOTKEEPER-DIGEST:DIGEST"},
	{regexp.MustCompile(`serial [0-9a-f]{16}`), "serial SERIAL"},
	{regexp.MustCompile(`sha256:[0-9a-f]{64}\b`), "sha256:DIGEST"}, // audit: a test CA's fingerprint
	{regexp.MustCompile(`\b[0-9a-f]{12}\b`), "KEYID"},
	{regexp.MustCompile(`\b\d\.\d+e\+09\b`), "UNIXTIME"},
	{regexp.MustCompile(`\bin \d+ms\b`), "in Nms"},
	{regexp.MustCompile(`\bby [^\s@]+@[^\s.]+`), "by USER@HOST"}, // audit: the operator and host of a transcript entry
}

// normalize rewrites text for golden comparison; an iCalendar file (CRLF)
// is unfolded first, since a fold may split a time.
func normalize(text string) string {
	if strings.Contains(text, "\r\n") {
		text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n ", ""), "\r\n", "\n")
	}
	for _, n := range normalizers {
		text = n.re.ReplaceAllString(text, n.to)
	}
	return text
}

func withGoldenCmds(cmds map[string]func(ts *testscript.TestScript, neg bool, args []string)) map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	cmds["normalize"] = func(ts *testscript.TestScript, neg bool, args []string) {
		for _, a := range args {
			p := ts.MkAbs(a)
			data, err := os.ReadFile(p)
			ts.Check(err)
			ts.Check(os.WriteFile(p, []byte(normalize(string(data))), 0o644))
		}
	}
	return cmds
}

// bashCompletion is the bash-completion package's script, which cobra's
// bash completion needs.
const bashCompletion = "/usr/share/bash-completion/bash_completion"

// icalendarPython returns a python3 that has the icalendar module, or "".
func icalendarPython() string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import icalendar").Run() == nil {
			return py
		}
	}
	return ""
}

// needTool is condition [need:TOOL]; python is icalendarPython's.
func needTool(tool, python string) (bool, error) {
	ok := false
	switch tool {
	case "icalendar":
		ok = python != ""
	case "bash-completion":
		_, err := os.Stat(bashCompletion)
		ok = err == nil
	default:
		_, err := exec.LookPath(tool)
		ok = err == nil
	}
	if !ok && os.Getenv("CI") == "true" {
		return false, fmt.Errorf("%s is required in CI: run softhsm-test/install-deps.sh", tool)
	}
	return ok, nil
}
