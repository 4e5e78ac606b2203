package hsm

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
)

// OpenFunc opens a backend.
type OpenFunc func(opts Options) (Backend, error)

var (
	registryMu sync.Mutex
	registry   = map[string]OpenFunc{}
)

// Register makes a backend available for URIs of the given scheme. Backends
// call it from init; a program imports the backends it wants.
func Register(scheme string, open OpenFunc) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic("hsm: backend registered twice for scheme " + scheme)
	}
	registry[scheme] = open
}

// Schemes lists the registered URI schemes.
func Schemes() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	var out []string
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Keyring opens backends on demand and keeps them open for the life of the
// process, so that each token is logged in to once. It is safe for
// concurrent use.
type Keyring struct {
	opts     Options
	mu       sync.Mutex
	backends map[string]Backend
}

// NewKeyring returns a Keyring that opens backends with opts.
func NewKeyring(opts Options) *Keyring {
	return &Keyring{opts: opts, backends: map[string]Backend{}}
}

// Backend returns the backend for uri's scheme, opening it on first use.
func (k *Keyring) Backend(uri *URI) (Backend, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if b, ok := k.backends[uri.Scheme]; ok {
		return b, nil
	}
	registryMu.Lock()
	open, ok := registry[uri.Scheme]
	registryMu.Unlock()
	if !ok {
		return nil, &Error{Kind: ErrUnsupported, URI: uri.Object(), Detail: "no backend for URI scheme " + uri.Scheme,
			HintText: "key URIs start with one of: " + strings.Join(Schemes(), ":, ") + ":"}
	}
	b, err := open(k.opts)
	if err != nil {
		return nil, err
	}
	k.backends[uri.Scheme] = b
	return b, nil
}

// resolve parses the URI text s and returns it with its backend.
func (k *Keyring) resolve(s string) (Backend, *URI, error) {
	uri, err := ParseURI(s)
	if err != nil {
		return nil, nil, err
	}
	b, err := k.Backend(uri)
	if err != nil {
		return nil, nil, err
	}
	return b, uri, nil
}

// Signer opens the key named by the URI text s.
func (k *Keyring) Signer(ctx context.Context, s string) (Signer, error) {
	b, uri, err := k.resolve(s)
	if err != nil {
		return nil, err
	}
	return b.Signer(ctx, uri)
}

// Generate generates a key at the URI text s.
func (k *Keyring) Generate(ctx context.Context, s string, opts GenerateOptions) (*KeyInfo, error) {
	b, uri, err := k.resolve(s)
	if err != nil {
		return nil, err
	}
	return b.Generate(ctx, uri, opts)
}

// List lists the keys of the token or device named by the URI text s.
func (k *Keyring) List(ctx context.Context, s string) ([]KeyInfo, error) {
	b, uri, err := k.resolve(s)
	if err != nil {
		return nil, err
	}
	return b.List(ctx, uri)
}

// Attest returns the evidence for the key named by the URI text s.
func (k *Keyring) Attest(ctx context.Context, s string) (*Evidence, error) {
	b, uri, err := k.resolve(s)
	if err != nil {
		return nil, err
	}
	return b.Attest(ctx, uri)
}

// Close closes every backend the keyring opened.
func (k *Keyring) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for name, b := range k.backends {
		errs = append(errs, b.Close())
		delete(k.backends, name)
	}
	return errors.Join(errs...)
}
