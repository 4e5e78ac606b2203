package softhsm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The PKCS#11 test double of softhsm-test/pkcs11shim: a module that
// forwards every call to SoftHSM2 but reports the PIN flags SoftHSM never
// sets (CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED, and COUNT_LOW when
// asked) and counts C_Login calls, so that the real binary can be run
// against a token at its final try or locked. Its environment variables:
const (
	ShimModuleEnv  = "PKCS11SHIM_MODULE"  // the real module the shim forwards to
	ShimControlEnv = "PKCS11SHIM_CONTROL" // the control file: "LABEL|* low final-try locked minpin=N maxpin=N" lines
	ShimLogEnv     = "PKCS11SHIM_LOG"     // the file each C_Login call is appended to
	// ShimSignLogEnv names the file each signature is appended to:
	// "C_Sign token=LABEL key=LABEL data=FNV1A64/LEN rv=0xRV".
	ShimSignLogEnv = "PKCS11SHIM_SIGNLOG"
)

// Shim is a built test double around this Env's SoftHSM2 module.
type Shim struct {
	// Path is the shim module: use it as module-path (or
	// ROOTKEEPER_PKCS11_MODULE) instead of SoftHSM2's.
	Path string
	// Control, Log and SignLog are the files named by
	// PKCS11SHIM_CONTROL, PKCS11SHIM_LOG and PKCS11SHIM_SIGNLOG.
	Control, Log, SignLog string
	real                  string
}

// BuildShim compiles softhsm-test/pkcs11shim/pkcs11shim.c with gcc into
// dir and returns the module's path. The PKCS#11 headers come from the
// miekg/pkcs11 module (the one rootkeeper builds with).
func BuildShim(dir string) (string, error) {
	_, self, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(self), "..", "pkcs11shim", "pkcs11shim.c")
	inc, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/miekg/pkcs11").Output()
	if err != nil {
		return "", fmt.Errorf("finding the PKCS#11 headers (go list -m github.com/miekg/pkcs11): %v", err)
	}
	out := filepath.Join(dir, "libpkcs11shim.so")
	cmd := exec.Command("gcc", "-Wall", "-Werror", "-shared", "-fPIC", "-O2", "-o", out, src,
		"-I", strings.TrimSpace(string(inc)), "-ldl", "-lpthread")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %v\n%s", src, err, msg)
	}
	return out, nil
}

// NewShim builds the shim for this test and points it, through the
// process environment (t.Setenv), at this Env's SoftHSM2 module, an empty
// control file and a login log in t.TempDir(). The test is skipped (failed
// in CI) without gcc.
func (e *Env) NewShim(t testing.TB) *Shim {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc is required in CI to build the PKCS#11 shim")
		}
		t.Skip("gcc is not installed: the PKCS#11 shim cannot be built")
	}
	dir := t.TempDir()
	path, err := BuildShim(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := &Shim{Path: path, Control: filepath.Join(dir, "control"), Log: filepath.Join(dir, "logins"), SignLog: filepath.Join(dir, "signs"), real: e.ModulePath}
	for k, v := range map[string]string{ShimModuleEnv: s.real, ShimControlEnv: s.Control, ShimLogEnv: s.Log, ShimSignLogEnv: s.SignLog} {
		t.Setenv(k, v)
	}
	return s
}

// Set replaces the control file's lines, e.g. Set(t, "root-a final-try").
func (s *Shim) Set(t testing.TB, lines ...string) {
	t.Helper()
	if err := os.WriteFile(s.Control, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Logins returns the C_Login calls logged so far, one line each:
// "C_Login token=LABEL user=N rv=0xRV".
func (s *Shim) Logins(t testing.TB) []string {
	t.Helper()
	return readLines(t, s.Log)
}

// Signs returns the signatures logged so far, one line each:
// "C_Sign token=LABEL key=LABEL data=FNV1A64/LEN rv=0xRV".
func (s *Shim) Signs(t testing.TB) []string {
	t.Helper()
	return readLines(t, s.SignLog)
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// URI is like [Env.URI] with the shim as the module.
func (s *Shim) URI(e *Env, label, object string) string {
	return strings.Replace(e.URI(label, object), "module-path="+e.ModulePath, "module-path="+s.Path, 1)
}
