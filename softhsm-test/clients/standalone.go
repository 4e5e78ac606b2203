package clients

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
)

// Standalone returns both clients, go-tuf then tuf-js, for use outside a
// test (the demo's tuf-check tool). Each keeps its state under
// cacheDir/<name>; tuf-js writes its scratch files under cacheDir/tmp.
func Standalone(cfg Config, cacheDir string) ([]Client, error) {
	g, err := newGoTUF(filepath.Join(cacheDir, GoTUFName), cfg)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(cacheDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	j, err := newTufJS(filepath.Join(cacheDir, TufJSName), tmp, cfg)
	if err != nil {
		return nil, err
	}
	return []Client{g, j}, nil
}

// ServeDir is [Serve] outside a test: it returns the URLs and a function
// that stops the server.
func ServeDir(repoDir string) (metadataURL, targetsURL string, stop func()) {
	mux := http.NewServeMux()
	mux.Handle("/metadata/", http.StripPrefix("/metadata/", noDirs(http.FileServer(http.Dir(filepath.Join(repoDir, "metadata"))))))
	mux.Handle("/targets/", http.StripPrefix("/targets/", noDirs(http.FileServer(http.Dir(filepath.Join(repoDir, "targets"))))))
	srv := httptest.NewServer(mux)
	return srv.URL + "/metadata/", srv.URL + "/targets/", srv.Close
}
