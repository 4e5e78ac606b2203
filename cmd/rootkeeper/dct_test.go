package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/rogpeppe/go-internal/testscript"
)

// Script commands for Docker Content Trust (targets add --oci, check-image,
// import notary): a real OCI registry (go-containerregistry's) on loopback,
// images pushed to it, and Notary v1 collections made by Notary's own
// library (softhsm-test/notary).
func dctCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		// registry starts an OCI registry on 127.0.0.1 for the script and
		// sets $REGISTRY to its host:port.
		"registry": func(ts *testscript.TestScript, neg bool, args []string) {
			srv := httptest.NewServer(registry.New(registry.Logger(discardLogger())))
			ts.Defer(srv.Close)
			ts.Setenv("REGISTRY", strings.TrimPrefix(srv.URL, "http://"))
		},
		// serve VAR DIR serves DIR over loopback HTTP, as a static web
		// server would, and sets $VAR to its URL.
		"serve": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) != 2 {
				ts.Fatalf("usage: serve VAR DIR")
			}
			srv := httptest.NewServer(http.FileServer(http.Dir(ts.MkAbs(args[1]))))
			ts.Defer(srv.Close)
			ts.Setenv(args[0], srv.URL)
		},
		// pushimage VAR REF pushes a new random image to REF and sets $VAR
		// to its manifest digest, ${VAR}_HEX to the digest's hex and
		// ${VAR}_LEN to the manifest's length.
		"pushimage": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) != 2 {
				ts.Fatalf("usage: pushimage VAR REF")
			}
			ref, err := name.ParseReference(args[1])
			ts.Check(err)
			img, err := random.Image(256, 1)
			ts.Check(err)
			ts.Check(remote.Write(ref, img))
			d, err := img.Digest()
			ts.Check(err)
			raw, err := img.RawManifest()
			ts.Check(err)
			ts.Setenv(args[0], d.String())
			ts.Setenv(args[0]+"_HEX", d.Hex)
			ts.Setenv(args[0]+"_LEN", fmt.Sprint(len(raw)))
		},
		// notary-fixture ARGS... runs softhsm-test/notary's fixture
		// generator (built once per test run) with ARGS; its JSON output
		// is the command's stdout.
		"notary-fixture": func(ts *testscript.TestScript, neg bool, args []string) {
			bin := notaryBins(ts)
			cmd := exec.Command(filepath.Join(bin, "notary-fixture"), args...)
			cmd.Dir = ts.Getenv("WORK")
			out, err := cmd.Output()
			ts.Stdout().Write(out)
			if err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					ts.Stderr().Write(ee.Stderr)
				}
				ts.Fatalf("notary-fixture: %v", err)
			}
		},
	}
}

// withDCT adds dctCmds to the script commands; the Notary binaries are
// built into a directory of t's, once.
func withDCT(t *testing.T, cmds map[string]func(ts *testscript.TestScript, neg bool, args []string)) map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	notaryDir = t.TempDir()
	for k, v := range dctCmds() {
		cmds[k] = v
	}
	return cmds
}

var (
	notaryOnce sync.Once
	notaryDir  string
	notaryErr  error
)

// notaryBins builds softhsm-test/notary's fixture generator once per test
// run (about 30 s cold, a second from Go's build cache).
func notaryBins(ts *testscript.TestScript) string {
	notaryOnce.Do(func() { notaryErr = buildNotary(notaryDir, "./cmd/notary-fixture") })
	if notaryErr != nil {
		ts.Fatalf("building softhsm-test/notary: %v", notaryErr)
	}
	return notaryDir
}

// buildNotary builds packages of the softhsm-test/notary module into dir.
func buildNotary(dir string, pkgs ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := append([]string{"build", "-C", "../../softhsm-test/notary", "-o", dir + "/"}, pkgs...)
	if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
