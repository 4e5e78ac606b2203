package oci

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func startRegistry(t *testing.T) string {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func pushRandom(t *testing.T, ref string) string {
	t.Helper()
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func TestResolve(t *testing.T) {
	reg := startRegistry(t)
	d1 := pushRandom(t, reg+"/library/app:v1.2")
	m, err := Resolve(context.Background(), reg+"/library/app:v1.2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest != d1 || m.TargetName() != "library/app:v1.2" || m.GUN() != reg+"/library/app" || m.Length == 0 || len(m.SHA512) != 64 {
		t.Fatalf("%+v", m)
	}
	if c := m.Custom()["oci"].(map[string]any); c["repository"] != "library/app" || c["tag"] != "v1.2" || c["mediaType"] == "" {
		t.Errorf("custom %v", c)
	}
	// By digest: no tag, and the bytes must have that digest.
	byDigest, err := Resolve(context.Background(), reg+"/library/app@"+d1, Options{})
	if err != nil || byDigest.Digest != d1 || byDigest.TargetName() != "" {
		t.Fatalf("by digest: %+v %v", byDigest, err)
	}
	// A re-pointed tag resolves to the new manifest.
	d2 := pushRandom(t, reg+"/library/app:v1.2")
	if m2, err := Resolve(context.Background(), reg+"/library/app:v1.2", Options{}); err != nil || m2.Digest != d2 || d2 == d1 {
		t.Fatalf("re-pointed: %+v %v", m2, err)
	}
	_, err = Resolve(context.Background(), reg+"/library/app:nope", Options{})
	var oe *Error
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), "cannot fetch the manifest of") || oe.Hint() == "" {
		t.Fatalf("unknown tag: %v", err)
	}
	if _, err := Resolve(context.Background(), "UPPER/Case::x", Options{}); err == nil || !strings.Contains(err.Error(), "is not an image reference") {
		t.Fatalf("bad reference: %v", err)
	}
	if got := (&Manifest{Registry: name.DefaultRegistry, Repository: "library/app"}).GUN(); got != "docker.io/library/app" {
		t.Errorf("Docker Hub GUN %q", got)
	}
}

type recorder struct{ urls []string }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.urls = append(r.urls, req.URL.String())
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
}

// TestPlainHTTPGuard: plain HTTP reaches only loopback registries unless
// --insecure-registry; go-containerregistry alone would also use it for
// private (RFC 1918) addresses.
func TestPlainHTTPGuard(t *testing.T) {
	for _, tc := range []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"http://localhost:5000/v2/", false, true},
		{"http://127.0.0.1:5000/v2/", false, true},
		{"http://[::1]:5000/v2/", false, true},
		{"http://10.0.0.1:5000/v2/", false, false},
		{"http://192.168.1.2/v2/", false, false},
		{"http://127.0.0.2/v2/", false, false},
		{"http://registry.example.org/v2/", false, false},
		{"http://10.0.0.1:5000/v2/", true, true},
		{"https://10.0.0.1:5000/v2/", false, true},
	} {
		rec := &recorder{}
		g := &plainHTTPGuard{next: rec, insecure: tc.insecure}
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		_, err := g.RoundTrip(req)
		var ge *guardError
		if tc.ok != (err == nil) || (!tc.ok && (!errors.As(err, &ge) || len(rec.urls) != 0)) {
			t.Errorf("%s (insecure %t): %v, sent %v", tc.url, tc.insecure, err, rec.urls)
		}
	}
}
