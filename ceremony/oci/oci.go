// Package oci resolves image references in OCI registries for Docker
// Content Trust: a tag is signed as a TUF target whose length and hashes
// are those of the image manifest the registry serves for it (Resolve),
// and a consumer checks that what the registry serves is what the tagging
// key signed (Check).
//
// Registry access is go-containerregistry's: the registry's own auth
// through the default keychain (~/.docker/config.json and credential
// helpers), HTTPS always, plain HTTP only to localhost/127.0.0.1/[::1] or
// with Options.Insecure.
package oci

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Options tune registry access.
type Options struct {
	// Insecure allows plain HTTP to a registry that is not on loopback
	// (--insecure-registry).
	Insecure bool
	// Transport, if set, replaces go-containerregistry's default transport
	// (still wrapped by the plain-HTTP guard).
	Transport http.RoundTripper
}

// Manifest is what a registry serves for a reference.
type Manifest struct {
	Reference  string `json:"reference"`  // as given
	Registry   string `json:"registry"`   // "registry.example.org", "localhost:5000", "index.docker.io"
	Repository string `json:"repository"` // "library/app"
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"` // "sha256:…" of the bytes served
	MediaType  string `json:"media_type"`
	Length     int64  `json:"length"`
	SHA256     []byte `json:"-"`
	SHA512     []byte `json:"-"`
}

// TargetName is the TUF target name rootkeeper signs the manifest under:
// REPOSITORY:TAG ("library/app:v1.2").
func (m *Manifest) TargetName() string {
	if m.Tag == "" {
		return ""
	}
	return m.Repository + ":" + m.Tag
}

// GUN is the reference's Notary GUN: registry/repository, with Docker
// Hub's registry written docker.io as Docker Content Trust does.
func (m *Manifest) GUN() string {
	reg := m.Registry
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + m.Repository
}

// Custom is the custom metadata rootkeeper signs with an image target.
func (m *Manifest) Custom() map[string]any {
	oci := map[string]any{"registry": m.Registry, "repository": m.Repository, "mediaType": m.MediaType, "digest": m.Digest}
	if m.Tag != "" {
		oci["tag"] = m.Tag
	}
	return map[string]any{"oci": oci}
}

// Error is a registry problem with a hint.
type Error struct {
	Detail, HintText string
	Err              error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Detail + ": " + e.Err.Error()
	}
	return e.Detail
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Hint says what to do.
func (e *Error) Hint() string { return e.HintText }

// ParseReference parses an image reference (REGISTRY/REPO:TAG or
// REGISTRY/REPO@sha256:…).
func ParseReference(ref string, opts Options) (name.Reference, error) {
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, append(nopts, name.StrictValidation)...)
	if err != nil {
		return nil, &Error{Detail: fmt.Sprintf("%q is not an image reference", ref), Err: err,
			HintText: "write it as REGISTRY/REPOSITORY:TAG, e.g. registry.example.org/library/app:v1.2"}
	}
	return r, nil
}

// Resolve fetches the manifest the registry serves for ref and returns its
// digest, length, media type and hashes, computed from the bytes served.
func Resolve(ctx context.Context, ref string, opts Options) (*Manifest, error) {
	r, err := ParseReference(ref, opts)
	if err != nil {
		return nil, err
	}
	rt := opts.Transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(&plainHTTPGuard{next: rt, insecure: opts.Insecure}))
	if err != nil {
		return nil, registryError(r, err)
	}
	m := &Manifest{Reference: ref, Registry: r.Context().RegistryStr(), Repository: r.Context().RepositoryStr(),
		MediaType: string(desc.MediaType), Length: int64(len(desc.Manifest))}
	if t, ok := r.(name.Tag); ok {
		m.Tag = t.TagStr()
	}
	s256, s512 := sha256.Sum256(desc.Manifest), sha512.Sum512(desc.Manifest)
	m.SHA256, m.SHA512 = s256[:], s512[:]
	m.Digest = "sha256:" + hex.EncodeToString(m.SHA256)
	if d, ok := r.(name.Digest); ok && d.DigestStr() != m.Digest {
		return nil, &Error{Detail: fmt.Sprintf("%s: the registry served a manifest with digest %s", ref, m.Digest),
			HintText: "the registry does not serve what the reference names; do not trust it"}
	}
	return m, nil
}

func registryError(r name.Reference, err error) error {
	var guard *guardError
	if errors.As(err, &guard) {
		return &Error{Detail: guard.Error(), HintText: "use an https registry, or pass --insecure-registry if plain HTTP to " + guard.host + " is really what you want"}
	}
	return &Error{Detail: fmt.Sprintf("cannot fetch the manifest of %s from %s", r, r.Context().RegistryStr()), Err: err,
		HintText: "check the reference and that the registry is reachable; credentials come from ~/.docker/config.json (docker login)"}
}

// plainHTTPGuard refuses plain-HTTP requests to registries that are not on
// loopback unless insecure: go-containerregistry would otherwise fall back
// to HTTP for private (RFC 1918) addresses on its own.
type plainHTTPGuard struct {
	next     http.RoundTripper
	insecure bool
}

type guardError struct{ host string }

func (e *guardError) Error() string {
	return "refusing plain HTTP to registry " + e.host + ": only localhost, 127.0.0.1 and [::1] are reached without TLS"
}

func (g *plainHTTPGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure && !loopback(req.URL.Hostname()) {
		return nil, &guardError{host: req.URL.Host}
	}
	return g.next.RoundTrip(req)
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback))
}
