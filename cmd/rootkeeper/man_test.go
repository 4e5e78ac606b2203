package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestManPages: `rootkeeper __man DIR` writes a page for every command,
// with its synopsis and every flag, dated by SOURCE_DATE_EPOCH; man(1)
// renders each one when it is installed.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	var out, errb bytes.Buffer
	if code := run([]string{"__man", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	a := &app{stdout: &bytes.Buffer{}, ui: &tui{stderr: &bytes.Buffer{}}}
	root := a.rootCommand()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-")
		data, err := os.ReadFile(filepath.Join(dir, name+".1"))
		if err != nil {
			t.Errorf("no man page for %s: %v", c.CommandPath(), err)
			return
		}
		page := string(data)
		if !strings.Contains(page, `.TH "`+strings.ToUpper(name)+`" "1" "Jan 2026"`) || !strings.Contains(page, ".SH NAME") {
			t.Errorf("%s.1 has no proper header:\n%.300s", name, page)
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && !strings.Contains(page, `\fB--`+f.Name+`\fP`) && !strings.Contains(page, `\fB\-\-`+f.Name+`\fP`) {
				t.Errorf("%s.1 does not describe --%s", name, f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if _, err := os.Stat(filepath.Join(dir, "rootkeeper-__man.1")); err == nil {
		t.Error("the hidden __man has a page")
	}
	if _, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command("man", "--warnings", "-l", filepath.Join(dir, "rootkeeper-status.1"))
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=80")
		text, err := cmd.CombinedOutput()
		words := strings.Join(strings.Fields(string(text)), " ") // man justifies the lines
		if err != nil || !strings.Contains(words, "rootkeeper-status - Show each role's version") || strings.Contains(words, "warning:") {
			t.Errorf("man -l: %v\n%s", err, text)
		}
	}
}

// TestMakeInstall: make install puts the binary and the man pages under
// DESTDIR and PREFIX.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rootkeeper")
	}
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("make is required in CI")
		}
		t.Skip("make is not installed")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "dest")
	cmd := exec.Command("make", "-C", "../..", "install", "GO="+goBin, "BIN="+filepath.Join(tmp, "rootkeeper"),
		"MANDIR="+filepath.Join(tmp, "man"), "DESTDIR="+dest, "PREFIX=/usr")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	bin := filepath.Join(dest, "usr", "bin", "rootkeeper")
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "rootkeeper ") {
		t.Errorf("%s --version: %v %s", bin, err, out)
	}
	for _, page := range []string{"rootkeeper.1", "rootkeeper-status.1", "rootkeeper-delegate-add.1", "rootkeeper-completion-bash.1"} {
		fi, err := os.Stat(filepath.Join(dest, "usr", "share", "man", "man1", page))
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v", page, fi, err)
		}
	}
}
