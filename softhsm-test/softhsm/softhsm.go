// Package softhsm sets up private SoftHSM2 tokens for tests.
//
// Every test that needs a PKCS#11 token calls [NewTokens], which gives the
// test its own SoftHSM2 configuration and token directory under
// t.TempDir(), so that tests never see each other's keys, never touch the
// machine's tokens and leave nothing behind:
//
//	env := softhsm.NewTokens(t, "root-a", "root-b")
//	uri := env.URI("root-a", "root-1") // pkcs11:token=root-a;object=root-1?module-path=…&pin-source=…
//
// NewTokens sets SOFTHSM2_CONF for the test process (with t.Setenv, so the
// test cannot be parallel) and [Env.Environ] returns an environment for
// subprocesses (the rootkeeper binary, pkcs11-tool) that points at the same
// tokens.
//
// When SoftHSM2 is not installed the test is skipped, except in CI (CI=true),
// where it fails: CI must install it (see [Install] and
// softhsm-test/install-softhsm.sh).
//
// The PINs are fixed test values ([PIN], [SOPIN]); they protect nothing.
package softhsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The PINs every test token gets. They are test values, not secrets.
const (
	PIN   = "rootkeeper-test-pin"
	SOPIN = "rootkeeper-test-so-pin"
)

// PINEnv is the environment variable [Env.Tool] passes the user PIN in, so
// that it stays out of pkcs11-tool's argv.
const PINEnv = "ROOTKEEPER_TEST_PKCS11_PIN"

// ModulePaths are the places SoftHSM2's PKCS#11 module is installed by the
// usual packages, in the order [ModulePath] tries them.
var ModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/lib/pkcs11/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
	"/usr/local/opt/softhsm/lib/softhsm/libsofthsm2.so",
}

// InstallCommand is the command that installs what the tests need on
// Debian and Ubuntu.
const InstallCommand = "apt-get update && apt-get install -y softhsm2 opensc"

// ModulePath returns the path of SoftHSM2's PKCS#11 module: the one named
// by SOFTHSM2_MODULE if set, else the first of [ModulePaths] that exists.
func ModulePath() (string, error) {
	if p := os.Getenv("SOFTHSM2_MODULE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("SOFTHSM2_MODULE=%s: %w", p, err)
		}
		return p, nil
	}
	for _, p := range ModulePaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("libsofthsm2.so not found in %s", strings.Join(ModulePaths, ", "))
}

// Available reports whether SoftHSM2 (its module and softhsm2-util) is
// installed, and if not, why.
func Available() error {
	if _, err := ModulePath(); err != nil {
		return err
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return errors.New("softhsm2-util is not in PATH")
	}
	return nil
}

// Install installs SoftHSM2 and OpenSC (for pkcs11-tool) with apt-get when
// run as root on a system that has it. Otherwise it returns an error that
// gives the command to run.
func Install() error {
	if Available() == nil {
		if _, err := exec.LookPath("pkcs11-tool"); err == nil {
			return nil
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("SoftHSM2 is not installed; as root run: %s", InstallCommand)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("SoftHSM2 is not installed and there is no apt-get: install softhsm2 and opensc with the system's package manager")
	}
	cmd := exec.Command("sh", "-c", InstallCommand)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", InstallCommand, err, out)
	}
	return Available()
}

// Env is a private SoftHSM2 installation for one test.
type Env struct {
	// ModulePath is the SoftHSM2 PKCS#11 module.
	ModulePath string
	// ConfPath is the SOFTHSM2_CONF file that names Dir.
	ConfPath string
	// Dir is the token directory.
	Dir string
	// PINFile holds the user PIN of every token, mode 0600, for
	// pin-source=.
	PINFile string
	// Labels are the labels of the tokens made so far.
	Labels []string
}

// NewTokens creates a private SoftHSM2 configuration in t.TempDir(), points
// SOFTHSM2_CONF at it for the rest of the test, and initializes one token
// per label with [SOPIN] and [PIN].
//
// It skips the test when SoftHSM2 is not installed, unless the environment
// variable CI is "true", in which case it fails it.
func NewTokens(t testing.TB, labels ...string) *Env {
	t.Helper()
	if err := Available(); err != nil {
		msg := fmt.Sprintf("SoftHSM2 is not installed (%v); install it with: %s (or run softhsm-test/install-softhsm.sh)", err, InstallCommand)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	module, _ := ModulePath()
	root := t.TempDir()
	env := &Env{
		ModulePath: module,
		ConfPath:   filepath.Join(root, "softhsm2.conf"),
		Dir:        filepath.Join(root, "tokens"),
		PINFile:    filepath.Join(root, "user.pin"),
	}
	if err := os.Mkdir(env.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := "directories.tokendir = " + env.Dir + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(env.ConfPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env.PINFile, []byte(PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", env.ConfPath)
	for _, l := range labels {
		env.AddToken(t, l)
	}
	return env
}

// AddToken initializes one more token labeled label. A module that is
// already initialized in the process sees it only after C_Finalize and
// C_Initialize.
func (e *Env) AddToken(t testing.TB, label string) {
	t.Helper()
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
	cmd.Env = e.Environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token --label %s: %v\n%s", label, err, out)
	}
	e.Labels = append(e.Labels, label)
}

// URI returns the key URI of object on the token labeled label, with this
// environment's module path and pin file. An empty object gives the
// token's URI.
func (e *Env) URI(label, object string) string {
	path := "token=" + escape(label)
	if object != "" {
		path += ";object=" + escape(object)
	}
	return "pkcs11:" + path + "?module-path=" + e.ModulePath + "&pin-source=" + e.PINFile
}

// Environ returns the process environment with SOFTHSM2_CONF pointing at
// this Env's configuration and [PINEnv] set to [PIN], for subprocesses.
func (e *Env) Environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SOFTHSM2_CONF=") || strings.HasPrefix(kv, PINEnv+"=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "SOFTHSM2_CONF="+e.ConfPath, PINEnv+"="+PIN)
}

// Tool runs pkcs11-tool with --module set to this Env's module and the
// given arguments, and returns its combined output. The user PIN is
// available to it as --pin env:ROOTKEEPER_TEST_PKCS11_PIN (see [Env.Login]).
// The test is skipped (failed in CI) when pkcs11-tool is not installed.
func (e *Env) Tool(t testing.TB, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		msg := "pkcs11-tool is not installed; install it with: " + InstallCommand
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command("pkcs11-tool", append([]string{"--module", e.ModulePath}, args...)...)
	cmd.Env = e.Environ()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Login returns the pkcs11-tool arguments that select the token labeled
// label and log in with the user PIN without putting it in argv.
func (e *Env) Login(label string) []string {
	return []string{"--token-label", label, "--login", "--pin", "env:" + PINEnv}
}

// escape percent-encodes what RFC 7512 does not allow in a path value.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
