package notary

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Source gives the files of one collection.
type Source interface {
	// Fetch returns the metadata of role ("root", "targets/releases"),
	// at most max bytes: the current file, or with version > 0 that
	// version (roots only), or, when sha256 is known, the file with that
	// hash (a server serves it by consistent name; a trust directory only
	// has the current file, which the caller checks against the hash).
	Fetch(ctx context.Context, role string, version int, sha256 []byte, max int64) ([]byte, error)
	// Versions reports whether old root versions can be fetched.
	Versions() bool
	// String names the source for messages and the transcript.
	String() string
}

// ErrNotFound is a file the source does not have.
var ErrNotFound = errors.New("not found")

var gunRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*$`)

// CheckGUN refuses GUNs that are not a clean relative path of registry
// and repository characters.
func CheckGUN(gun string) error {
	if !gunRE.MatchString(gun) || path.Clean(gun) != gun || strings.Contains("/"+gun+"/", "/../") || strings.Contains(gun, "//") {
		return fmt.Errorf("GUN %q is not a collection name like registry.example.org/library/app", gun)
	}
	return nil
}

// TrustDir is a Notary client's trust directory (~/.notary, or
// ~/.docker/trust for Docker): DIR/tuf/GUN/metadata/ROLE.json.
type TrustDir struct {
	Dir, GUN string
}

// Fetch reads ROLE.json; old root versions are not kept there.
func (t *TrustDir) Fetch(_ context.Context, role string, version int, _ []byte, max int64) ([]byte, error) {
	if version > 0 {
		return nil, fmt.Errorf("%d.%s: a trust directory keeps only the current root: %w", version, role, ErrNotFound)
	}
	p := filepath.Join(t.Dir, "tuf", filepath.FromSlash(t.GUN), "metadata", filepath.FromSlash(role)+".json")
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readMax(f, p, max)
}

// Versions is false: the client's cache holds the current root only.
func (t *TrustDir) Versions() bool { return false }

func (t *TrustDir) String() string { return "trust directory " + t.Dir }

// Server is a notary-server: URL/v2/GUN/_trust/tuf/NAME.json, by
// consistent name (ROLE.HASH) when the hash is known, as Notary's client
// fetches.
type Server struct {
	URL, GUN string
	Client   *http.Client // nil: http.DefaultClient
}

// Fetch GETs the file.
func (s *Server) Fetch(ctx context.Context, role string, version int, sum []byte, max int64) ([]byte, error) {
	name := role
	switch {
	case version > 0:
		name = fmt.Sprintf("%d.%s", version, role)
	case len(sum) > 0:
		name = role + "." + hex.EncodeToString(sum)
	}
	u := strings.TrimSuffix(s.URL, "/") + "/v2/" + s.GUN + "/_trust/tuf/" + name + ".json"
	if _, err := url.Parse(u); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w", u, ErrNotFound)
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%s: %s: the server wants a token (Docker Hub's notary does): export the collection with the notary client first and import it with --trust-dir", u, resp.Status)
	default:
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	return readMax(resp.Body, u, max)
}

// Versions is true: a notary-server serves N.root.json.
func (s *Server) Versions() bool { return true }

func (s *Server) String() string { return "notary server " + s.URL }

func readMax(r io.Reader, name string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is longer than %d bytes", name, max)
	}
	return b, nil
}
