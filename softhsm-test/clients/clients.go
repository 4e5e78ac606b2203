// Package clients holds the independent TUF clients that rootkeeper's
// end-to-end tests use to check a repository written by rootkeeper.
//
// A repository is a directory DIR with DIR/metadata (1.root.json,
// 2.root.json, …, timestamp.json and either snapshot.json, targets.json,
// <role>.json or, with consistent snapshots, N.snapshot.json, N.targets.json,
// N.<role>.json) and DIR/targets (target files; with consistent snapshots
// named <hashhex>.<basename>, in the target's sub-directory). [Serve] exposes
// it over loopback HTTP exactly as a static web server would.
//
// Two clients implement [Client]:
//   - go-tuf v2 (metadata/updater), in process: [NewGoTUF];
//   - tuf-js 5.x (Node), through the script tufjs/client.mjs: [NewTufJS].
//     Its node_modules must be installed first, with
//     `npm ci --prefix softhsm-test/clients/tufjs` or [EnsureNodeDeps].
//
// Most tests only need [CheckRepository] (the repository must be accepted by
// both clients and serve the given target bytes) and [ExpectRejected] (both
// clients must refuse it). Tests of client state (root rotation, rollback)
// build clients with a persistent [Config.CacheDir] and call [Client.Update]
// repeatedly.
//
// These are test helpers: every constructor takes a testing.TB and fails the
// test on set-up errors; client errors are returned.
package clients

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Client is one TUF client implementation, bound to one repository URL pair
// and one persistent cache directory.
type Client interface {
	// Name identifies the implementation: "go-tuf" or "tuf-js".
	Name() string
	// Update runs the TUF client workflow (root, timestamp, snapshot,
	// top-level targets) against the repository, starting from the state in
	// the cache directory, and persists the newly trusted metadata there.
	Update(ctx context.Context) error
	// Fetch refreshes the metadata like Update, then looks targetPath up
	// (following delegations) and downloads and verifies it. It returns the
	// verified bytes.
	Fetch(ctx context.Context, targetPath string) ([]byte, error)
	// Lookup refreshes the metadata like Update and looks targetPath up
	// (following delegations) without downloading it: for targets whose
	// content lives elsewhere (image manifests in a registry). lookup.go
	Lookup(ctx context.Context, targetPath string) (*TargetInfo, error)
	// TrustedVersions returns the version of every metadata file in the
	// client's cache directory, keyed by role name ("root", "timestamp",
	// "snapshot", "targets", delegated role names). Roles never trusted are
	// absent.
	TrustedVersions() map[string]int64
}

// Config says what a client starts from and where the repository is.
type Config struct {
	// TrustedRoot is the root metadata the client is bootstrapped with
	// (normally the bytes of 1.root.json). It is used only while the cache
	// directory holds no root.json: a client with state starts from its
	// cached root, as a real client does.
	TrustedRoot []byte
	// CacheDir is the client's persistent state directory; it gets the
	// sub-directories metadata/ and targets/. Two clients built on the same
	// CacheDir share the state, so a client "restarts" by building a new one
	// on the same directory. Empty means a fresh t.TempDir(). [All] gives
	// each implementation its own sub-directory CacheDir/<Name()>.
	CacheDir string
	// MetadataURL and TargetsURL are the base URLs of DIR/metadata and
	// DIR/targets, as returned by [Serve].
	MetadataURL string
	TargetsURL  string
	// At, if non-zero, is the reference time for expiry checks instead of
	// the current time. go-tuf supports it through Updater.UnsafeSetRefTime.
	// tuf-js has no API for it: the script overrides the internal field
	// trustedSet.referenceTime of the pinned tuf-js version (and fails if it
	// is missing); real tuf-js clients always use the current time.
	At time.Time
}

// Names of the client implementations, as returned by [Client.Name].
const (
	GoTUFName = "go-tuf"
	TufJSName = "tuf-js"
)

// All returns one client of each implementation (go-tuf, then tuf-js) for
// cfg. If cfg.CacheDir is set, each gets its own sub-directory
// cfg.CacheDir/<name>, so their states do not mix.
func All(t testing.TB, cfg Config) []Client {
	t.Helper()
	sub := func(name string) Config {
		c := cfg
		if c.CacheDir != "" {
			c.CacheDir = filepath.Join(cfg.CacheDir, name)
		}
		return c
	}
	return []Client{NewGoTUF(t, sub(GoTUFName)), NewTufJS(t, sub(TufJSName))}
}

// Serve starts a loopback HTTP server (127.0.0.1, random port) serving
// repoDir/metadata under metadataURL and repoDir/targets under targetsURL.
// Files are read from disk on every request, so a test may change the
// repository between client updates. The server is closed when the test
// ends. Both URLs end with a slash.
func Serve(t testing.TB, repoDir string) (metadataURL, targetsURL string) {
	t.Helper()
	if fi, err := os.Stat(filepath.Join(repoDir, "metadata")); err != nil || !fi.IsDir() {
		t.Fatalf("clients.Serve: %s is not a repository: no metadata/ directory", repoDir)
	}
	metadataURL, targetsURL, stop := ServeDir(repoDir) // listens on 127.0.0.1:0
	t.Cleanup(stop)
	return metadataURL, targetsURL
}

// noDirs answers 404 for directory paths instead of a listing.
func noDirs(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// cacheDir returns cfg.CacheDir, or a fresh temporary directory.
func cacheDir(t testing.TB, cfg Config) string {
	t.Helper()
	if cfg.CacheDir != "" {
		return cfg.CacheDir
	}
	return t.TempDir()
}

// readVersions reads the "signed.version" of every *.json file in dir.
// File names are role names, URL-path-escaped by both clients.
func readVersions(dir string) map[string]int64 {
	out := map[string]int64{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var doc struct {
			Signed struct {
				Version *int64 `json:"version"`
			} `json:"signed"`
		}
		if json.Unmarshal(data, &doc) != nil || doc.Signed.Version == nil {
			continue
		}
		if role, err := url.PathUnescape(name); err == nil {
			name = role
		}
		out[name] = *doc.Signed.Version
	}
	return out
}
