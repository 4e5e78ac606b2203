package clients

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// goTUF is the go-tuf v2 client. A go-tuf Updater refreshes only once in its
// lifetime, so every Update/Fetch builds a new Updater from the cache
// directory; the state lives on disk, as with a restarted real client.
type goTUF struct {
	cfg         Config
	metadataDir string
	targetsDir  string
}

// NewGoTUF returns a go-tuf v2 (metadata/updater) client for cfg. It fails
// the test if cfg lacks the trusted root or the URLs, or if the cache
// directory cannot be created.
func NewGoTUF(t testing.TB, cfg Config) Client {
	t.Helper()
	c, err := newGoTUF(cacheDir(t, cfg), cfg)
	if err != nil {
		t.Fatalf("clients.NewGoTUF: %v", err)
	}
	return c
}

func newGoTUF(dir string, cfg Config) (*goTUF, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	c := &goTUF{cfg: cfg, metadataDir: filepath.Join(dir, "metadata"), targetsDir: filepath.Join(dir, "targets")}
	for _, d := range []string{c.metadataDir, c.targetsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func checkConfig(cfg Config) error {
	switch {
	case len(cfg.TrustedRoot) == 0:
		return errors.New("Config.TrustedRoot is empty")
	case cfg.MetadataURL == "" || cfg.TargetsURL == "":
		return errors.New("Config.MetadataURL and Config.TargetsURL are required (see clients.Serve)")
	}
	return nil
}

func (c *goTUF) Name() string { return GoTUFName }

func (c *goTUF) TrustedVersions() map[string]int64 { return readVersions(c.metadataDir) }

// updater builds a go-tuf Updater starting from the cached root.json if
// there is one, else from the bootstrap root. Its HTTP requests carry ctx.
func (c *goTUF) updater(ctx context.Context) (*updater.Updater, error) {
	root, err := os.ReadFile(filepath.Join(c.metadataDir, "root.json"))
	if errors.Is(err, os.ErrNotExist) {
		root = c.cfg.TrustedRoot
	} else if err != nil {
		return nil, err
	}
	uc, err := config.New(c.cfg.MetadataURL, root)
	if err != nil {
		return nil, err
	}
	uc.LocalMetadataDir = c.metadataDir
	uc.LocalTargetsDir = c.targetsDir
	uc.RemoteTargetsURL = c.cfg.TargetsURL
	// Own http.Client: the default fetcher shares http.DefaultClient.
	hc := &http.Client{Timeout: time.Minute, Transport: ctxTransport{ctx: ctx, base: http.DefaultTransport}}
	if err := uc.SetDefaultFetcherHTTPClient(hc); err != nil {
		return nil, err
	}
	up, err := updater.New(uc)
	if err != nil {
		return nil, fmt.Errorf("loading trusted root: %w", err)
	}
	if !c.cfg.At.IsZero() {
		up.UnsafeSetRefTime(c.cfg.At)
	}
	return up, nil
}

func (c *goTUF) Update(ctx context.Context) error {
	up, err := c.updater(ctx)
	if err != nil {
		return fmt.Errorf("go-tuf: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return fmt.Errorf("go-tuf: refresh: %w", err)
	}
	return nil
}

func (c *goTUF) Fetch(ctx context.Context, targetPath string) ([]byte, error) {
	up, err := c.updater(ctx)
	if err != nil {
		return nil, fmt.Errorf("go-tuf: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return nil, fmt.Errorf("go-tuf: refresh: %w", err)
	}
	info, err := up.GetTargetInfo(targetPath)
	if err != nil {
		return nil, fmt.Errorf("go-tuf: target %s: %w", targetPath, err)
	}
	_, data, err := up.DownloadTarget(info, "", "")
	if err != nil {
		return nil, fmt.Errorf("go-tuf: download %s: %w", targetPath, err)
	}
	return data, nil
}

// ctxTransport makes every request carry ctx (go-tuf's fetcher has no
// context parameter).
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(r.WithContext(t.ctx))
}
