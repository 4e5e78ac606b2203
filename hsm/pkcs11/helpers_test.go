package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// noEnv keeps ROOTKEEPER_PIN and ROOTKEEPER_PKCS11_MODULE of the
// developer's shell out of the tests.
func noEnv(string) string { return "" }

// open returns a backend that the test closes when it ends.
func open(t testing.TB, opts hsm.Options) *Backend {
	t.Helper()
	if opts.Getenv == nil {
		opts.Getenv = noEnv
	}
	b, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b.(*Backend)
}

func parse(t testing.TB, s string) *hsm.URI {
	t.Helper()
	u, err := hsm.ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// withQuery adds the env's module-path and pin-source to a canonical key
// URI.
func withQuery(t testing.TB, env *softhsm.Env, canonical string) *hsm.URI {
	t.Helper()
	u := parse(t, canonical)
	u.SetQuery("module-path", env.ModulePath)
	u.SetQuery("pin-source", env.PINFile)
	return u
}

func generate(t testing.TB, b *Backend, uri string, alg hsm.Algorithm) *hsm.KeyInfo {
	t.Helper()
	info, err := b.Generate(context.Background(), parse(t, uri), hsm.GenerateOptions{Algorithm: alg})
	if err != nil {
		t.Fatalf("Generate %s %s: %v (hint: %s)", alg, uri, err, hsm.HintOf(err))
	}
	return info
}

// signVerify signs a message with s the way TUF does for its algorithm
// and verifies the signature with Go's crypto.
func signVerify(t testing.TB, s crypto.Signer, msg []byte) {
	t.Helper()
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		h := crypto.SHA256
		if pub.Curve.Params().BitSize == 384 {
			h = crypto.SHA384
		}
		d := digest(h, msg)
		sig, err := s.Sign(nil, d, h)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !ecdsa.VerifyASN1(pub, d, sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case ed25519.PublicKey:
		sig, err := s.Sign(nil, msg, crypto.Hash(0))
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatal("Ed25519 signature does not verify")
		}
	case *rsa.PublicKey:
		d := digest(crypto.SHA256, msg)
		sig, err := s.Sign(nil, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		// Verify with the salt length TUF's rsassa-pss-sha256 uses.
		if err := rsa.VerifyPSS(pub, crypto.SHA256, d, sig, &rsa.PSSOptions{SaltLength: sha256.Size}); err != nil {
			t.Fatalf("RSA-PSS signature does not verify: %v", err)
		}
	default:
		t.Fatalf("public key %T", pub)
	}
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	}
	panic(h)
}

// ctx returns the real *pkcs11.Ctx behind the module the test's backend
// uses, and the main session of the token the URI names, for checks that
// go around rootkeeper.
func raw(t testing.TB, b *Backend, uri string) (*pkcs11.Ctx, *token) {
	t.Helper()
	u := parse(t, uri)
	tok, err := b.loggedIn(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	tok.mu.Unlock()
	ctx, ok := unwrapDriver(tok.mod.drv).(*pkcs11.Ctx)
	if !ok {
		t.Fatalf("driver is %T", tok.mod.drv)
	}
	return ctx, tok
}

func findOne(t testing.TB, ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, tmpl ...*pkcs11.Attribute) pkcs11.ObjectHandle {
	t.Helper()
	if err := ctx.FindObjectsInit(sh, tmpl); err != nil {
		t.Fatal(err)
	}
	objs, _, err := ctx.FindObjects(sh, 10)
	ctx.FindObjectsFinal(sh)
	if err != nil || len(objs) != 1 {
		t.Fatalf("found %d objects: %v", len(objs), err)
	}
	return objs[0]
}

func wantKind(t testing.TB, err, kind error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %v (%T), want kind %v", err, err, kind)
	}
	var he *hsm.Error
	if !errors.As(err, &he) {
		t.Fatalf("error %v is %T, want *hsm.Error", err, err)
	}
	if he.HintText == "" {
		t.Errorf("error %v has no hint", err)
	}
}

// spy wraps the real driver to count logins and to make the token report
// PIN flags SoftHSM never sets (it sets CKF_USER_PIN_COUNT_LOW after a
// wrong PIN, but never FINAL_TRY nor LOCKED).
type spy struct {
	driver
	mu        sync.Mutex
	logins    int
	addFlags  uint
	loginErr  error // returned instead of calling C_Login when set
	afterFail uint  // flags to report once a login has failed
	failed    bool
}

func (s *spy) unwrap() driver { return s.driver }

func (s *spy) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	ti, err := s.driver.GetTokenInfo(slot)
	s.mu.Lock()
	defer s.mu.Unlock()
	ti.Flags |= s.addFlags
	if s.failed {
		ti.Flags |= s.afterFail
	}
	return ti, err
}

func (s *spy) Login(sh pkcs11.SessionHandle, userType uint, pin string) error {
	s.mu.Lock()
	s.logins++
	fail := s.loginErr
	if fail != nil {
		s.failed = true
	}
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	return s.driver.Login(sh, userType, pin)
}

func (s *spy) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

func unwrapDriver(d driver) driver {
	for {
		w, ok := d.(interface{ unwrap() driver })
		if !ok {
			return d
		}
		d = w.unwrap()
	}
}

// spyOn puts a spy beside the real module at path for the rest of the
// test. No backend may be using the module.
func spyOn(t testing.TB, path string) *spy {
	t.Helper()
	path = moduleKey(path)
	modulesMu.Lock()
	defer modulesMu.Unlock()
	old := modules[path]
	var real driver
	if old != nil {
		if old.refs != 0 {
			t.Fatal("module in use")
		}
		real = unwrapDriver(old.drv)
	} else {
		d, err := loadDriver(path)
		if err != nil {
			t.Fatal(err)
		}
		real = d
	}
	s := &spy{driver: real}
	modules[path] = &module{path: path, drv: s}
	t.Cleanup(func() {
		modulesMu.Lock()
		defer modulesMu.Unlock()
		modules[path] = &module{path: path, drv: real}
	})
	return s
}
