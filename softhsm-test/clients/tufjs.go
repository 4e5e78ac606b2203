package clients

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TufJSDirEnv names an environment variable that, if set, overrides where the
// tuf-js client directory (package.json, client.mjs, node_modules) is.
const TufJSDirEnv = "ROOTKEEPER_TUFJS_DIR"

// tufJSRel is the client directory relative to the module root.
const tufJSRel = "softhsm-test/clients/tufjs"

// TufJSDir returns the directory of the tuf-js client script: $TufJSDirEnv
// if set, else the tufjs/ directory beside this source file, else
// softhsm-test/clients/tufjs under the enclosing Go module root found from
// the working directory.
func TufJSDir() (string, error) {
	if d := os.Getenv(TufJSDirEnv); d != "" {
		return d, nil
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		d := filepath.Join(filepath.Dir(file), "tufjs")
		if fileExists(filepath.Join(d, "client.mjs")) {
			return d, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if fileExists(filepath.Join(d, "go.mod")) && fileExists(filepath.Join(d, tufJSRel, "client.mjs")) {
			return filepath.Join(d, tufJSRel), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("cannot find %s/client.mjs above %s (set %s)", tufJSRel, wd, TufJSDirEnv)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// nodeDepsMissing returns a non-nil error, telling how to fix it, when the
// tuf-js node_modules are not installed in dir.
func nodeDepsMissing(dir string) error {
	if fileExists(filepath.Join(dir, "node_modules", "tuf-js", "package.json")) {
		return nil
	}
	return fmt.Errorf("tuf-js is not installed in %s/node_modules: run `npm ci --prefix %s` "+
		"(from the repository root; `make` does it) or call clients.EnsureNodeDeps in TestMain", dir, tufJSRel)
}

// EnsureNodeDeps installs the tuf-js client's node_modules with `npm ci`
// (from the committed package-lock.json) if they are absent. Concurrent
// callers, e.g. test binaries of several packages, are serialised by a file
// lock, and only the first one installs. It needs npm and the npm registry.
func EnsureNodeDeps() error {
	dir, err := TufJSDir()
	if err != nil {
		return err
	}
	if nodeDepsMissing(dir) == nil {
		return nil
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".npm-ci.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway
	if nodeDepsMissing(dir) == nil {
		return nil // installed by another process meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--prefix", dir, "--no-audit", "--no-fund")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm ci --prefix %s: %w\n%s", dir, err, out)
	}
	return nodeDepsMissing(dir)
}

// tufJS is the tuf-js client: every Update/Fetch runs `node client.mjs` once.
type tufJS struct {
	cfg      Config
	dir      string // cache dir
	script   string
	rootFile string // bootstrap root, copied by the script if needed
	tmp      string // per-client scratch dir (outputs)
	calls    int
}

// NewTufJS returns a tuf-js 5.x client (run by Node) for cfg. It fails the
// test if node or the tuf-js node_modules are missing (the message says to
// run `npm ci --prefix softhsm-test/clients/tufjs`), or if cfg is
// incomplete.
func NewTufJS(t testing.TB, cfg Config) Client {
	t.Helper()
	dir := cacheDir(t, cfg)
	c, err := newTufJS(dir, t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("clients.NewTufJS: %v", err)
	}
	return c
}

func newTufJS(dir, tmp string, cfg Config) (*tufJS, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("node is not installed: %w", err)
	}
	jsDir, err := TufJSDir()
	if err != nil {
		return nil, err
	}
	if err := nodeDepsMissing(jsDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	rootFile := filepath.Join(tmp, "trusted-root.json")
	if err := os.WriteFile(rootFile, cfg.TrustedRoot, 0o600); err != nil {
		return nil, err
	}
	return &tufJS{cfg: cfg, dir: dir, script: filepath.Join(jsDir, "client.mjs"), rootFile: rootFile, tmp: tmp}, nil
}

func (c *tufJS) Name() string { return TufJSName }

func (c *tufJS) TrustedVersions() map[string]int64 {
	return readVersions(filepath.Join(c.dir, "metadata"))
}

// tufJSRequest is the JSON read by client.mjs on stdin.
type tufJSRequest struct {
	MetadataURL string   `json:"metadataUrl"`
	TargetsURL  string   `json:"targetsUrl"`
	CacheDir    string   `json:"cacheDir"`
	TrustedRoot string   `json:"trustedRoot"`
	Targets     []string `json:"targets,omitempty"`
	Lookup      []string `json:"lookup,omitempty"`
	OutDir      string   `json:"outDir,omitempty"`
	RefTime     string   `json:"refTime,omitempty"`
}

// tufJSResult is the JSON line printed by client.mjs.
type tufJSResult struct {
	OK       bool                   `json:"ok"`
	Error    string                 `json:"error"`
	Version  string                 `json:"version"`
	Versions map[string]int64       `json:"versions"`
	Targets  map[string]string      `json:"targets"`
	Infos    map[string]*TargetInfo `json:"infos"`
}

func (c *tufJS) run(ctx context.Context, targets []string, lookup ...string) (*tufJSResult, error) {
	c.calls++
	req := tufJSRequest{
		MetadataURL: c.cfg.MetadataURL,
		TargetsURL:  c.cfg.TargetsURL,
		CacheDir:    c.dir,
		TrustedRoot: c.rootFile,
		Targets:     targets,
		Lookup:      lookup,
	}
	if len(targets) > 0 {
		req.OutDir = filepath.Join(c.tmp, fmt.Sprintf("out-%d", c.calls))
	}
	if !c.cfg.At.IsZero() {
		req.RefTime = c.cfg.At.UTC().Format(time.RFC3339Nano)
	}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "node", c.script)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res tufJSResult
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		return nil, fmt.Errorf("tuf-js: node %s: %v (no result line: %v)\nstdout: %s\nstderr: %s",
			c.script, runErr, jerr, stdout.String(), stderr.String())
	}
	if !res.OK {
		return &res, errors.New("tuf-js: " + res.Error)
	}
	if runErr != nil {
		return &res, fmt.Errorf("tuf-js: node exited with %v despite ok result; stderr: %s", runErr, stderr.String())
	}
	return &res, nil
}

func (c *tufJS) Update(ctx context.Context) error {
	_, err := c.run(ctx, nil)
	return err
}

func (c *tufJS) Fetch(ctx context.Context, targetPath string) ([]byte, error) {
	res, err := c.run(ctx, []string{targetPath})
	if err != nil {
		return nil, err
	}
	out, ok := res.Targets[targetPath]
	if !ok {
		return nil, fmt.Errorf("tuf-js: result lists no file for %s", targetPath)
	}
	return os.ReadFile(out)
}
