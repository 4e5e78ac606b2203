package e2e

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// runbookBlocks returns the ```sh blocks of a runbook, in order, without
// those marked <!-- runbook-test: skip … --> on the line before.
func runbookBlocks(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []string
	var cur []string
	in, skip, prev := false, false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && strings.TrimSpace(line) == "```sh":
			in, skip, cur = true, strings.HasPrefix(strings.TrimSpace(prev), "<!-- runbook-test: skip"), nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			if !skip {
				blocks = append(blocks, strings.Join(cur, "\n"))
			}
		case in:
			cur = append(cur, line)
		}
		if strings.TrimSpace(line) != "" {
			prev = line
		}
	}
	if err := sc.Err(); err != nil || in {
		t.Fatalf("%s: unterminated block or %v", file, err)
	}
	return blocks
}

// TestRunbookNotaryMigration runs every sh block of
// docs/runbook-notary-migration.md, in order, in one shell: a collection on
// a real notary-server v0.7.0 (made by Notary's client library), exported by
// the real notary CLI, its root certificate checked with jq and openssl,
// imported into a repository whose keys are on SoftHSM2, served by a static
// server and checked with check-image against a real registry. The example
// names in the runbook are replaced by the test's servers and files.
func TestRunbookNotaryMigration(t *testing.T) {
	for _, tool := range []string{"jq", "openssl", "base64"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required (make deps installs it)", tool)
			}
			t.Skipf("%s is not installed: run make deps", tool)
		}
	}
	bin := notaryBins(t)
	rk := filepath.Join(t.TempDir(), "bin")
	if out, err := exec.Command(goTool(), "build", "-o", rk+"/", "../../cmd/rootkeeper").CombinedOutput(); err != nil {
		t.Fatalf("building rootkeeper: %v\n%s", err, out)
	}
	env := softhsm.NewTokens(t, "root-a", "root-b", "root-c", "tagging", "online")
	server := startNotaryServer(t, bin)
	reg := startRegistry(t)
	v12, latest := push(t, reg+"/library/app:v1.2"), push(t, reg+"/library/app:latest")
	push(t, reg+"/library/app:v1.3") // signed in step 7
	runFixture(t, bin, "publish", "-server", server, "-trust-dir", t.TempDir(), "-gun", reg+"/library/app", "-target", target(v12), "-target", target(latest))

	work := t.TempDir()
	srv := filepath.Join(work, "srv", "tuf", "app")
	os.MkdirAll(filepath.Dir(srv), 0o755)
	static := httptest.NewServer(http.StripPrefix("/app/", http.FileServer(http.Dir(srv))))
	defer static.Close()

	script := strings.Join(runbookBlocks(t, "../../docs/runbook-notary-migration.md"), "\n")
	script = strings.NewReplacer(
		"https://notary.example.org", server,
		"https://tuf.example.org/app", static.URL+"/app",
		"registry.example.org", reg,
		"/run/officer.pin", env.PINFile,
		"/srv/tuf/app", srv,
		"rootkeeper import notary", "rootkeeper import notary --yes", // the officer answers y at the terminal
	).Replace(script)
	cmd := exec.Command("sh", "-ex", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+rk+string(os.PathListSeparator)+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"ROOTKEEPER_PKCS11_MODULE="+env.ModulePath, "ROOTKEEPER_PIN=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the runbook's commands failed: %v\n%s", err, out)
	}
	if os.Getenv("RUNBOOK_LOG") != "" {
		t.Logf("%s", out)
	}
	for _, want := range []string{
		"rootkeeper:   targets              → targets      2 targets",
		"OK: a TUF client would accept this repository",
		"check-image: VERIFIED " + reg + "/library/app:v1.2",
		"check-image: VERIFIED " + reg + "/library/app:v1.3",
		"pull " + reg + "/library/app@" + v12.Digest,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the runbook's output lacks %q:\n%s", want, out)
		}
	}
	if tr := string(readFile(t, filepath.Join(srv, "transcript.jsonl"))); !strings.Contains(tr, `"notary_gun":"`+reg+`/library/app"`) {
		t.Errorf("transcript:\n%s", tr)
	}
}
