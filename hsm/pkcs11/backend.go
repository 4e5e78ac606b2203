package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/miekg/pkcs11"
	"github.com/rootkeeper/rootkeeper/hsm"
)

func init() { hsm.Register("pkcs11", Open) }

// Backend is the PKCS#11 [hsm.Backend]. It loads modules and opens tokens
// on first use and keeps them until Close. It is safe for concurrent use.
type Backend struct {
	opts hsm.Options

	mu      sync.Mutex
	modules map[string]*module // acquired, by path
	closed  bool
}

var _ hsm.Backend = (*Backend)(nil)

// Open returns a PKCS#11 backend that reads PINs and tells the officer
// what it waits for through opts. It loads no module until a URI names one.
func Open(opts hsm.Options) (hsm.Backend, error) {
	return &Backend{opts: opts, modules: map[string]*module{}}, nil
}

func (b *Backend) getenv(k string) string {
	if b.opts.Getenv != nil {
		return b.opts.Getenv(k)
	}
	return os.Getenv(k)
}

// token returns the open token the URI names, loading and initializing
// its module if this backend has not yet.
func (b *Backend) token(ctx context.Context, uri *hsm.URI) (*token, error) {
	if uri == nil || uri.Scheme != "pkcs11" {
		s := "<nil>"
		if uri != nil {
			s = uri.Object()
		}
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: s, Detail: "not a pkcs11: URI",
			HintText: "write PKCS#11 keys as pkcs11:token=LABEL;object=LABEL?module-path=PATH&pin-source=FILE"}
	}
	if err := ctx.Err(); err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "cancelled", Err: err}
	}
	path, err := modulePath(uri, b.getenv)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errClosed(uri)
	}
	key := moduleKey(path)
	m := b.modules[key]
	if m == nil {
		if m, err = acquireModule(path, uri); err != nil {
			b.mu.Unlock()
			return nil, err
		}
		b.modules[key] = m
	}
	b.mu.Unlock()
	if err := m.checkLibrary(uri); err != nil {
		return nil, err
	}
	return m.findToken(uri)
}

// loggedIn returns the token the URI names, locked and logged in to. The
// caller unlocks it.
func (b *Backend) loggedIn(ctx context.Context, uri *hsm.URI) (*token, error) {
	t, err := b.token(ctx, uri)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if err := t.loginLocked(ctx, b.opts, uri); err != nil {
		t.mu.Unlock()
		return nil, err
	}
	return t, nil
}

// Generate creates a key pair of opts.Algorithm inside the token, labeled
// with the URI's object and identified by its id (16 random bytes when the
// URI has none). The private key is a private, sensitive, non-extractable
// token object that can only sign. Generate refuses a label or id already
// on the token, and reads back the key's evidence and public key.
func (b *Backend) Generate(ctx context.Context, uri *hsm.URI, opts hsm.GenerateOptions) (*hsm.KeyInfo, error) {
	label, ok := uri.Path("object")
	if !ok || label == "" {
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: uri.Object(), Detail: "the URI names no object label for the new key",
			HintText: "add object=LABEL to the URI, e.g. pkcs11:token=root-a;object=root-2025"}
	}
	if opts.PINPolicy != "" || opts.TouchPolicy != "" {
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: uri.Object(), Detail: "PIN and touch policies apply to YubiKey PIV slots, not to PKCS#11 tokens",
			HintText: "drop --pin-policy and --touch-policy for pkcs11: keys"}
	}
	var id []byte
	if s, ok := uri.Path("id"); ok {
		if s == "" {
			return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: uri.Object(), Detail: "the URI's id is empty",
				HintText: "drop id= to get a random 16-byte id, or give one such as id=%01%02"}
		}
		id = []byte(s)
	} else {
		id = make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "cannot draw a random key id", Err: err}
		}
	}
	mech, pubTmpl, privTmpl, err := keyTemplates(opts.Algorithm, label, id)
	if err != nil {
		err.(*hsm.Error).URI = uri.Object()
		return nil, err
	}

	t, err := b.loggedIn(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	for _, c := range []struct {
		attr *pkcs11.Attribute
		what string
	}{
		{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), "label " + label},
		{pkcs11.NewAttribute(pkcs11.CKA_ID, id), "id " + idText(id)},
	} {
		objs, err := t.find([]*pkcs11.Attribute{c.attr})
		if err != nil {
			return nil, err
		}
		if len(objs) > 0 {
			return nil, &hsm.Error{Kind: hsm.ErrKeyExists, URI: uri.Object(),
				Detail:   fmt.Sprintf("%s already has %d object(s) with %s", t.device(), len(objs), c.what),
				HintText: "choose another object= label (and id=); rootkeeper never replaces or reuses a key in a PKCS#11 token"}
		}
	}
	b.opts.Say("generating key %q (%s) inside %s", label, opts.Algorithm, t.device())
	drv := t.mod.drv
	pub, priv, err := drv.GenerateKeyPair(t.session, []*pkcs11.Mechanism{mech}, pubTmpl, privTmpl)
	if err != nil && opts.Algorithm == hsm.Ed25519 && refusedParams(err) {
		// The token wants the other encoding of the curve.
		for _, a := range pubTmpl {
			if a.Type == pkcs11.CKA_EC_PARAMS {
				a.Value = paramsEd25519
			}
		}
		pub, priv, err = drv.GenerateKeyPair(t.session, []*pkcs11.Mechanism{mech}, pubTmpl, privTmpl)
	}
	if err != nil {
		kind, hint := hsm.ErrDevice, "check that the token has room for two more objects and that it is writable"
		switch rv(err) {
		case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID, pkcs11.CKR_TEMPLATE_INCONSISTENT,
			pkcs11.CKR_DOMAIN_PARAMS_INVALID, pkcs11.CKR_CURVE_NOT_SUPPORTED, pkcs11.CKR_KEY_SIZE_RANGE, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID:
			kind, hint = hsm.ErrUnsupported, "this token cannot generate "+string(opts.Algorithm)+" keys: choose another algorithm (pkcs11-tool -M lists its mechanisms)"
		}
		return nil, &hsm.Error{Kind: kind, URI: uri.Object(), Detail: fmt.Sprintf("C_GenerateKeyPair (%s) failed on %s", opts.Algorithm, t.device()),
			Err: err, HintText: hint}
	}
	info, err := t.readBack(pub, priv)
	if err != nil {
		// Do not leave a key behind that rootkeeper could not describe.
		_ = drv.DestroyObject(t.session, priv)
		_ = drv.DestroyObject(t.session, pub)
		err.(*hsm.Error).URI = uri.Object()
		return nil, err
	}
	if info.Algorithm != opts.Algorithm {
		_ = drv.DestroyObject(t.session, priv)
		_ = drv.DestroyObject(t.session, pub)
		return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(),
			Detail:   fmt.Sprintf("the token generated a %q key when asked for %q; it was destroyed", info.Algorithm, opts.Algorithm),
			HintText: "the token's module misbehaves: use another token"}
	}
	return &info, nil
}

// refusedParams reports whether err is a token's refusal of a curve's
// encoding.
func refusedParams(err error) bool {
	switch rv(err) {
	case pkcs11.CKR_ATTRIBUTE_VALUE_INVALID, pkcs11.CKR_DOMAIN_PARAMS_INVALID, pkcs11.CKR_CURVE_NOT_SUPPORTED, pkcs11.CKR_TEMPLATE_INCONSISTENT:
		return true
	}
	return false
}

// readBack reads a freshly generated key pair. t.mu is held.
func (t *token) readBack(pub, priv pkcs11.ObjectHandle) (hsm.KeyInfo, error) {
	pubAttrs, err := attrs(t.mod.drv, t.session, pub, publicTypes...)
	if err != nil {
		return hsm.KeyInfo{}, &hsm.Error{Kind: hsm.ErrDevice, Detail: "cannot read back the new public key; the key pair was destroyed", Err: err}
	}
	privAttrs, err := attrs(t.mod.drv, t.session, priv, privateTypes...)
	if err != nil {
		return hsm.KeyInfo{}, &hsm.Error{Kind: hsm.ErrDevice, Detail: "cannot read back the new private key's attributes; the key pair was destroyed", Err: err}
	}
	info, err := t.keyInfo(pubAttrs, privAttrs)
	if err != nil {
		return hsm.KeyInfo{}, &hsm.Error{Kind: hsm.ErrDevice, Detail: "cannot parse the new public key; the key pair was destroyed", Err: err}
	}
	return info, nil
}

// Signer opens the key the URI names. It logs in to the token once per
// process, finds the public key by the URI's object and id and the private
// key by the public key's CKA_ID, checks that the two match (their common
// attributes and a test signature verified with the public key), and
// returns a [*Signer] with its own session.
func (b *Backend) Signer(ctx context.Context, uri *hsm.URI) (hsm.Signer, error) {
	t, err := b.loggedIn(ctx, uri)
	if err != nil {
		return nil, err
	}
	kp, err := t.resolveKey(uri)
	if err != nil {
		t.mu.Unlock()
		return nil, err
	}
	if !kp.canSign {
		t.mu.Unlock()
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: uri.Object(), Detail: "the private key has CKA_SIGN false",
			HintText: "this key cannot sign: name a signing key"}
	}
	sh, err := t.mod.drv.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.mu.Unlock()
		return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "C_OpenSession failed", Err: err,
			HintText: "the token may have too many open sessions: close other programs that use it"}
	}
	s := &Signer{
		drv: t.mod.drv, tok: t, opts: b.opts, uri: uri.Clone(),
		session: sh, key: kp.priv, keyType: kp.keyType, alwaysAuthn: kp.alwaysAuthn, info: kp.info, ctx: ctx,
	}
	t.signers = append(t.signers, s)
	t.mu.Unlock()
	if err := s.selfTest(); err != nil {
		s.discard()
		return nil, err
	}
	return s, nil
}

// List returns every private key on the token the URI names (only those
// matching its object and id, when it has them), with its public key,
// algorithm and evidence, sorted by label. A private key without a public
// key object is listed with a nil Public.
func (b *Backend) List(ctx context.Context, uri *hsm.URI) ([]hsm.KeyInfo, error) {
	t, err := b.loggedIn(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	var sel []*pkcs11.Attribute
	if _, ok := uri.Path("object"); ok {
		sel, _ = selector(uri)
	} else if _, ok := uri.Path("id"); ok {
		sel, _ = selector(uri)
	}
	privs, err := t.find(classTemplate(pkcs11.CKO_PRIVATE_KEY, sel))
	if err != nil {
		return nil, err
	}
	var out []hsm.KeyInfo
	for _, priv := range privs {
		privAttrs, err := attrs(t.mod.drv, t.session, priv, privateTypes...)
		if err != nil {
			return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "cannot read a private key's attributes", Err: err}
		}
		var pubAttrs map[uint][]byte
		if id := privAttrs[pkcs11.CKA_ID]; len(id) > 0 {
			pubs, err := t.find([]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			})
			if err != nil {
				return nil, err
			}
			if len(pubs) == 1 {
				pubAttrs, _ = attrs(t.mod.drv, t.session, pubs[0], publicTypes...)
				if sameKey(pubAttrs, privAttrs) != "" {
					pubAttrs = nil
				}
			}
		}
		info, err := t.keyInfo(pubAttrs, privAttrs)
		if err != nil {
			// Keep the key in the list without its unusable public key.
			info, _ = t.keyInfo(nil, privAttrs)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Label != out[j].Label {
			return out[i].Label < out[j].Label
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Attest returns the token's attributes of the key the URI names: whether
// it was generated on the token (CKA_LOCAL), was never extractable and
// always sensitive, and which token holds it.
func (b *Backend) Attest(ctx context.Context, uri *hsm.URI) (*hsm.Evidence, error) {
	t, err := b.loggedIn(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	kp, err := t.resolveKey(uri)
	if err != nil {
		return nil, err
	}
	return kp.info.Evidence, nil
}

// Close releases the modules the backend loaded. When no other backend in
// the process uses a module, Close logs out of its tokens, closes their
// sessions (so the Signers opened on them stop working) and finalizes it.
// Closing twice is harmless.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	for path, m := range b.modules {
		errs = append(errs, m.release())
		delete(b.modules, path)
	}
	return errors.Join(errs...)
}
