package roles

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// LookupOptions say where a TUF client finds the repository and what it
// trusts.
type LookupOptions struct {
	// Dir is a repository directory (DIR/metadata/…) read as a client
	// would read it from a server; or
	Dir string
	// URL is the repository's base URL: metadata at URL/metadata/.
	URL string
	// TrustedRoot is the root the client starts from. Required unless the
	// state directory holds a root.json from an earlier run.
	TrustedRoot []byte
	// StateDir keeps the client's trusted metadata between runs (rollback
	// protection, the newest root); empty means a fresh client that keeps
	// nothing.
	StateDir string
	// At, if not zero, is the reference time for expiry.
	At time.Time
}

// Lookup is a TUF client (go-tuf v2's updater) that has refreshed its
// top-level metadata: root chain, timestamp, snapshot, targets.
type Lookup struct {
	up  *updater.Updater
	tmp string // state directory of a client that keeps nothing
}

// Close removes the state of a client that keeps nothing.
func (l *Lookup) Close() error {
	if l.tmp != "" {
		return os.RemoveAll(l.tmp)
	}
	return nil
}

// ErrTargetNotFound is returned by Lookup.Target for a name no trusted
// role lists.
var ErrTargetNotFound = errors.New("no trusted role lists this target")

// NewLookup runs the client's refresh. Errors are go-tuf's: a
// metadata.ErrDownload* for files that could not be fetched, the other
// metadata errors for metadata the client refuses.
func NewLookup(opts LookupOptions) (*Lookup, error) {
	remote := strings.TrimSuffix(opts.URL, "/") + "/metadata"
	if opts.Dir != "" {
		abs, err := filepath.Abs(opts.Dir)
		if err != nil {
			return nil, err
		}
		remote = (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs) + "/metadata"}).String()
	}
	root := opts.TrustedRoot
	if opts.StateDir != "" {
		if cached, err := os.ReadFile(filepath.Join(opts.StateDir, "metadata", "root.json")); err == nil {
			root = cached // a client with state starts from its own newest root
		}
	}
	if len(root) == 0 {
		return nil, errors.New("no trusted root: give the root the client starts from")
	}
	cfg, err := config.New(remote, root)
	if err != nil {
		return nil, err
	}
	if opts.Dir != "" {
		cfg.Fetcher = &dirFetcher{dir: opts.Dir}
	}
	l := &Lookup{}
	state := opts.StateDir
	if state == "" {
		// go-tuf's updater reads its local files even with
		// DisableLocalCache (from the working directory): give it a
		// directory of its own.
		if l.tmp, err = os.MkdirTemp("", "rootkeeper-client-"); err != nil {
			return nil, err
		}
		state = l.tmp
	}
	cfg.LocalMetadataDir = filepath.Join(state, "metadata")
	cfg.LocalTargetsDir = filepath.Join(state, "targets")
	if l.up, err = updater.New(cfg); err != nil {
		l.Close()
		return nil, err
	}
	if !opts.At.IsZero() {
		l.up.UnsafeSetRefTime(opts.At)
	}
	if err := safe(l.up.Refresh); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Target finds name by the client's rules (a pre-order walk of the
// delegations from top-level targets, each role verified when reached).
func (l *Lookup) Target(name string) (*metadata.TargetFiles, error) {
	var tf *metadata.TargetFiles
	err := safe(func() error {
		var err error
		tf, err = l.up.GetTargetInfo(name)
		return err
	})
	if err != nil && err.Error() == fmt.Sprintf("target %s not found", name) { // go-tuf's plain error for it
		return nil, fmt.Errorf("%s: %w", name, ErrTargetNotFound)
	}
	return tf, err
}

// dirFetcher serves file:// URLs from a repository directory, inside it
// only (os.Root: no symlink or ".." leaves it), like a static web server
// that answers 404 for what is not there.
type dirFetcher struct{ dir string }

func (f *dirFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	u, err := url.Parse(urlPath)
	if err != nil || u.Scheme != "file" {
		return nil, &metadata.ErrDownload{Msg: "not a file URL: " + urlPath}
	}
	abs, err := filepath.Abs(f.dir)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(abs, filepath.FromSlash(path.Clean(u.Path)))
	if err != nil || !fs.ValidPath(filepath.ToSlash(rel)) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: urlPath}
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	file, err := root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: urlPath}
	}
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxLength+1))
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is longer than %d bytes", urlPath, maxLength)}
	}
	return data, nil
}
