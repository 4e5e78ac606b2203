package pkcs11

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

var bg = context.Background()

func TestGenerateSignVerify(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	for _, tc := range []struct {
		name string
		alg  hsm.Algorithm
	}{
		{"p256", hsm.ECDSAP256},
		{"p384", hsm.ECDSAP384},
		{"ed25519", hsm.Ed25519},
		{"rsa3072", hsm.RSA3072},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := generate(t, b, env.URI("root-a", "key-"+tc.name), tc.alg)
			if info.Algorithm != tc.alg || info.Label != "key-"+tc.name || len(info.ID) != 32 {
				t.Errorf("KeyInfo = %+v", info)
			}
			if !info.Evidence.HardwareBorn() || info.Evidence.Kind != hsm.EvidencePKCS11 {
				t.Errorf("evidence: %s", info.Evidence.Summary())
			}
			if info.Evidence.TokenLabel != "root-a" || info.Evidence.TokenModel != "SoftHSM v2" || info.Evidence.TokenSerial == "" {
				t.Errorf("token evidence = %+v", info.Evidence)
			}
			want := "pkcs11:token=root-a;object=key-" + tc.name + ";id=%"
			if !strings.HasPrefix(info.URI, want) || strings.Contains(info.URI, "?") {
				t.Errorf("URI = %q, want %s…", info.URI, want)
			}
			// The canonical URI names the key, once module and PIN are added.
			s, err := b.Signer(bg, withQuery(t, env, info.URI))
			if err != nil {
				t.Fatalf("Signer: %v (hint: %s)", err, hsm.HintOf(err))
			}
			if got := s.Info(); got.URI != info.URI || got.Algorithm != tc.alg || got.ID != info.ID {
				t.Errorf("Signer.Info = %+v, want %+v", got, info)
			}
			if !s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(info.Public) {
				t.Error("Signer.Public differs from the generated public key")
			}
			signVerify(t, s, []byte("root.json "+tc.name))
			// And so does the URI it was generated at.
			s2, err := b.Signer(bg, parse(t, env.URI("root-a", "key-"+tc.name)))
			if err != nil {
				t.Fatal(err)
			}
			signVerify(t, s2, []byte("again"))
		})
	}
}

func TestGenerateRSA4096(t *testing.T) {
	if testing.Short() {
		t.Skip("RSA-4096 generation is slow")
	}
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	info := generate(t, b, env.URI("root-a", "big"), hsm.RSA4096)
	if info.Algorithm != hsm.RSA4096 || info.Public.(*rsa.PublicKey).N.BitLen() != 4096 || info.Public.(*rsa.PublicKey).E != 65537 {
		t.Fatalf("KeyInfo = %+v", info)
	}
	s, err := b.Signer(bg, parse(t, env.URI("root-a", "big")))
	if err != nil {
		t.Fatal(err)
	}
	signVerify(t, s, []byte("root.json"))
}

func TestGenerateWithID(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	info := generate(t, b, strings.Replace(env.URI("root-a", "k"), "?", ";id=%ab%01?", 1), hsm.ECDSAP256)
	if info.ID != "ab01" || info.URI != "pkcs11:token=root-a;object=k;id=%AB%01" {
		t.Fatalf("KeyInfo = %+v", info)
	}
}

func TestSignOptions(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	generate(t, b, env.URI("root-a", "ec"), hsm.ECDSAP256)
	generate(t, b, env.URI("root-a", "ed"), hsm.Ed25519)
	generate(t, b, env.URI("root-a", "rsa"), hsm.RSA3072)
	signer := func(name string) hsm.Signer {
		s, err := b.Signer(bg, parse(t, env.URI("root-a", name)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	d := digest(crypto.SHA256, []byte("m"))
	for _, tc := range []struct {
		key    string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"ec", d, crypto.Hash(0)},                                        // ECDSA needs a hash
		{"ec", d[:20], crypto.SHA256},                                    // digest of the wrong size
		{"ed", d, crypto.SHA256},                                         // Ed25519 signs the message
		{"rsa", d, crypto.SHA256},                                        // PKCS #1 v1.5
		{"rsa", d, &rsa.PSSOptions{Hash: crypto.SHA256}},                 // salt length auto
		{"rsa", d, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 20}}, // other salt length
		{"rsa", d, &rsa.PSSOptions{Hash: crypto.SHA1, SaltLength: -1}},
	} {
		_, err := signer(tc.key).Sign(nil, tc.digest, tc.opts)
		wantKind(t, err, hsm.ErrUnsupported)
	}
	// An explicit salt length equal to the hash's is accepted.
	s := signer("rsa")
	sig, err := s.Sign(nil, d, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(s.Public().(*rsa.PublicKey), crypto.SHA256, d, sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
		t.Fatal(err)
	}
}

// TestPKCS11ToolSeesKeys checks rootkeeper's keys with OpenSC's
// pkcs11-tool, and uses a key pkcs11-tool generated.
func TestPKCS11ToolSeesKeys(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	info := generate(t, b, env.URI("root-a", "rk-p256"), hsm.ECDSAP256)
	generate(t, b, env.URI("root-a", "rk-ed"), hsm.Ed25519)

	out, err := env.Tool(t, append(env.Login("root-a"), "--list-objects", "--type", "privkey")...)
	if err != nil {
		t.Fatalf("pkcs11-tool -O: %v\n%s", err, out)
	}
	for _, label := range []string{"rk-p256", "rk-ed"} {
		i := strings.Index(out, "label:      "+label+"\n")
		if i < 0 {
			t.Fatalf("pkcs11-tool does not list %s:\n%s", label, out)
		}
		block := out[i:]
		if j := strings.Index(block, "Object;"); j > 0 {
			block = block[:j]
		}
		if !strings.Contains(block, "Access:     sensitive, always sensitive, never extractable, local") {
			t.Errorf("%s: pkcs11-tool says:\n%s", label, block)
		}
		if !strings.Contains(block, "Usage:      sign\n") {
			t.Errorf("%s: usage is not sign only:\n%s", label, block)
		}
	}
	if !strings.Contains(out, "ID:         "+info.ID) {
		t.Errorf("pkcs11-tool does not show id %s:\n%s", info.ID, out)
	}

	// A key generated by pkcs11-tool signs through rootkeeper.
	out, err = env.Tool(t, append(env.Login("root-a"), "--keypairgen", "--key-type", "EC:prime256v1", "--label", "X", "--id", "01")...)
	if err != nil {
		t.Fatalf("pkcs11-tool --keypairgen: %v\n%s", err, out)
	}
	s, err := b.Signer(bg, parse(t, env.URI("root-a", "X")))
	if err != nil {
		t.Fatalf("Signer on pkcs11-tool's key: %v (hint: %s)", err, hsm.HintOf(err))
	}
	if s.Info().ID != "01" || s.Info().Algorithm != hsm.ECDSAP256 || s.Info().URI != "pkcs11:token=root-a;object=X;id=%01" {
		t.Errorf("Info = %+v", s.Info())
	}
	signVerify(t, s, []byte("tool key"))

	keys, err := b.List(bg, parse(t, env.URI("root-a", "")))
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, k := range keys {
		labels = append(labels, k.Label)
		if k.Public == nil || k.Algorithm == "" || k.Evidence == nil {
			t.Errorf("List: %+v", k)
		}
	}
	if strings.Join(labels, ",") != "X,rk-ed,rk-p256" {
		t.Errorf("List labels = %v", labels)
	}
	ev, err := b.Attest(bg, parse(t, env.URI("root-a", "rk-ed")))
	if err != nil || !ev.HardwareBorn() {
		t.Errorf("Attest = %+v, %v", ev, err)
	}
}

// TestNotExtractable tries to export a generated private key around
// rootkeeper, with the raw driver.
func TestNotExtractable(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.Ed25519} {
		label := "k-" + string(alg)
		info := generate(t, b, env.URI("root-a", label), alg)
		if info.Evidence.Extractable || !info.Evidence.Sensitive {
			t.Fatalf("%s: evidence %+v", alg, info.Evidence)
		}
		p11, tok := raw(t, b, env.URI("root-a", ""))
		sh := tok.session
		id, _ := hex.DecodeString(info.ID)
		priv := findOne(t, p11, sh, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id))

		a, err := p11.GetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil)})
		if err != nil || !(len(a[0].Value) == 1 && a[0].Value[0] == 0) {
			t.Errorf("%s: CKA_EXTRACTABLE = %v, %v", alg, a, err)
		}
		if _, err := p11.GetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); rv(err) != pkcs11.CKR_ATTRIBUTE_SENSITIVE {
			t.Errorf("%s: reading CKA_VALUE: %v, want CKR_ATTRIBUTE_SENSITIVE", alg, err)
		}
		if err := p11.SetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}); err == nil {
			t.Errorf("%s: CKA_EXTRACTABLE could be set to true", alg)
		}
		if err := p11.SetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)}); err == nil {
			t.Errorf("%s: CKA_SENSITIVE could be set to false", alg)
		}
		// Wrap it with an AES key made for the purpose: SoftHSM refuses.
		wrapping, err := p11.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		})
		if err != nil {
			t.Fatalf("C_GenerateKey AES: %v", err)
		}
		wrapped, err := p11.WrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, wrapping, priv)
		if rv(err) != pkcs11.CKR_KEY_UNEXTRACTABLE || len(wrapped) > 0 {
			t.Errorf("%s: C_WrapKey of the private key: %v, want CKR_KEY_UNEXTRACTABLE", alg, err)
		}
	}
}

func TestGenerateRefusesDuplicates(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	info := generate(t, b, env.URI("root-a", "k"), hsm.ECDSAP256)
	_, err := b.Generate(bg, parse(t, env.URI("root-a", "k")), hsm.GenerateOptions{Algorithm: hsm.Ed25519})
	wantKind(t, err, hsm.ErrKeyExists)
	// Another label with the same id.
	u := withQuery(t, env, info.URI)
	u.SetPath("object", "other")
	_, err = b.Generate(bg, u, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256})
	wantKind(t, err, hsm.ErrKeyExists)
	_, err = b.Generate(bg, parse(t, env.URI("root-a", "")), hsm.GenerateOptions{Algorithm: hsm.ECDSAP256})
	wantKind(t, err, hsm.ErrUnsupported) // no object=
	_, err = b.Generate(bg, parse(t, env.URI("root-a", "n")), hsm.GenerateOptions{Algorithm: "dsa"})
	wantKind(t, err, hsm.ErrUnsupported)
	_, err = b.Generate(bg, parse(t, env.URI("root-a", "n")), hsm.GenerateOptions{Algorithm: hsm.ECDSAP256, TouchPolicy: "always"})
	wantKind(t, err, hsm.ErrUnsupported)
	keys, err := b.List(bg, parse(t, env.URI("root-a", "")))
	if err != nil || len(keys) != 1 {
		t.Fatalf("List = %v, %v", keys, err)
	}
}

func TestLookupErrors(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a", "twin", "twin")
	b := open(t, hsm.Options{})
	generate(t, b, env.URI("root-a", "k"), hsm.ECDSAP256)

	_, err := b.Signer(bg, parse(t, env.URI("root-b", "k")))
	wantKind(t, err, hsm.ErrTokenNotPresent)
	if h := hsm.HintOf(err); !strings.Contains(h, "token=root-a") || !strings.Contains(h, "token=twin") {
		t.Errorf("hint does not list the tokens: %s", h)
	}
	_, err = b.Signer(bg, parse(t, "pkcs11:object=k?module-path="+env.ModulePath))
	wantKind(t, err, hsm.ErrTokenNotPresent)

	_, err = b.Signer(bg, parse(t, env.URI("root-a", "nope")))
	wantKind(t, err, hsm.ErrKeyNotFound)
	_, err = b.Signer(bg, parse(t, env.URI("root-a", "")))
	wantKind(t, err, hsm.ErrKeyNotFound)

	_, err = b.List(bg, parse(t, env.URI("twin", "")))
	wantKind(t, err, hsm.ErrAmbiguousKey)
	if h := hsm.HintOf(err); !strings.Contains(h, "serial=") {
		t.Errorf("hint: %s", h)
	}
	// serial= picks one of the twins.
	keys, err := b.List(bg, parse(t, env.URI("root-a", "")))
	if err != nil || len(keys) != 1 {
		t.Fatal(keys, err)
	}
	serial := keys[0].Evidence.TokenSerial
	_, err = b.List(bg, parse(t, "pkcs11:token=root-a;serial="+serial+"?module-path="+env.ModulePath+"&pin-source="+env.PINFile))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.List(bg, parse(t, "pkcs11:token=root-a;serial=0000?module-path="+env.ModulePath+"&pin-source="+env.PINFile))
	wantKind(t, err, hsm.ErrTokenNotPresent)

	// Two keys labeled alike, made around rootkeeper.
	for _, id := range []string{"0a", "0b"} {
		if out, err := env.Tool(t, append(env.Login("root-a"), "--keypairgen", "--key-type", "EC:prime256v1", "--label", "same", "--id", id)...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	_, err = b.Signer(bg, parse(t, env.URI("root-a", "same")))
	wantKind(t, err, hsm.ErrAmbiguousKey)
	if h := hsm.HintOf(err); !strings.Contains(h, "id=%0A") || !strings.Contains(h, "id=%0B") {
		t.Errorf("hint: %s", h)
	}
	s, err := b.Signer(bg, parse(t, strings.Replace(env.URI("root-a", "same"), "?", ";id=%0b?", 1)))
	if err != nil {
		t.Fatal(err)
	}
	signVerify(t, s, []byte("m"))

	// Not a pkcs11 URI.
	_, err = b.Signer(bg, parse(t, "yubikey:serial=1;slot=9c"))
	wantKind(t, err, hsm.ErrUnsupported)
}

func TestModulePath(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	_, err := b.Signer(bg, parse(t, "pkcs11:token=root-a;object=k?module-path=/nonexistent/libsofthsm2.so"))
	wantKind(t, err, hsm.ErrModuleNotFound)
	_, err = b.Signer(bg, parse(t, "pkcs11:token=root-a;object=k?module-path=libsofthsm2.so"))
	wantKind(t, err, hsm.ErrModuleNotFound)
	notLib := filepath.Join(t.TempDir(), "not-a-module.so")
	os.WriteFile(notLib, []byte("not ELF"), 0o600)
	_, err = b.Signer(bg, parse(t, "pkcs11:token=root-a;object=k?module-path="+notLib))
	wantKind(t, err, hsm.ErrModuleNotFound)

	// From the environment, then from the usual places.
	b2 := open(t, hsm.Options{Getenv: func(k string) string {
		if k == ModuleEnv {
			return "/nonexistent/module.so"
		}
		return ""
	}})
	_, err = b2.List(bg, parse(t, "pkcs11:token=root-a?pin-source="+env.PINFile))
	wantKind(t, err, hsm.ErrModuleNotFound)
	if !strings.Contains(err.Error(), ModuleEnv) {
		t.Errorf("error does not name %s: %v", ModuleEnv, err)
	}
	b3 := open(t, hsm.Options{Getenv: func(k string) string {
		if k == ModuleEnv {
			return env.ModulePath
		}
		return ""
	}})
	if _, err := b3.List(bg, parse(t, "pkcs11:token=root-a?pin-source="+env.PINFile)); err != nil {
		t.Fatal(err)
	}
	b3.Close()
	if _, err := open(t, hsm.Options{}).List(bg, parse(t, "pkcs11:token=root-a?pin-source="+env.PINFile)); err != nil {
		t.Fatalf("search of the usual paths: %v", err)
	}
}

// TestPublicKeyMismatch pairs a public key object with the private key of
// another key pair, around rootkeeper.
func TestPublicKeyMismatch(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	for _, tc := range []struct {
		name    string
		alg     hsm.Algorithm // of the public key object
		privAlg hsm.Algorithm // of the private key put in its place
		why     string
	}{
		{"same-curve", hsm.ECDSAP256, hsm.ECDSAP256, "test signature"}, // only a signature tells them apart
		{"other-curve", hsm.ECDSAP256, hsm.ECDSAP384, "curves"},
		{"ed25519", hsm.Ed25519, hsm.Ed25519, "test signature"},
		{"ec-ed", hsm.ECDSAP256, hsm.Ed25519, "key types"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := generate(t, b, env.URI("root-a", tc.name+"-a"), tc.alg)
			c := generate(t, b, env.URI("root-a", tc.name+"-c"), tc.privAlg)
			p11, tok := raw(t, b, env.URI("root-a", ""))
			tok.mu.Lock()
			defer tok.mu.Unlock()
			sh := tok.session
			idA, _ := hex.DecodeString(a.ID)
			idC, _ := hex.DecodeString(c.ID)
			privA := findOne(t, p11, sh, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, idA))
			privC := findOne(t, p11, sh, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, idC))
			if err := p11.DestroyObject(sh, privA); err != nil {
				t.Fatal(err)
			}
			if err := p11.SetAttributeValue(sh, privC, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, idA)}); err != nil {
				t.Fatal(err)
			}
			tok.mu.Unlock()
			_, err := b.Signer(bg, parse(t, env.URI("root-a", tc.name+"-a")))
			tok.mu.Lock()
			wantKind(t, err, hsm.ErrKeyMismatch)
			if !strings.Contains(err.Error(), tc.why) {
				t.Errorf("error %v does not say %q", err, tc.why)
			}
		})
	}
}

func TestWrongPIN(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	kb := open(t, hsm.Options{})
	generate(t, kb, env.URI("root-a", "k1"), hsm.ECDSAP256)
	generate(t, kb, env.URI("root-a", "k2"), hsm.Ed25519)
	kb.Close()
	bad := filepath.Join(t.TempDir(), "bad.pin")
	if err := os.WriteFile(bad, []byte("not-the-pin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badURI := func(object string) *hsm.URI {
		u := parse(t, env.URI("root-a", object))
		u.SetQuery("pin-source", bad)
		return u
	}
	s := spyOn(t, env.ModulePath)
	b := open(t, hsm.Options{})
	_, err := b.Signer(bg, badURI("k1"))
	var pe *hsm.PINError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *hsm.PINError", err, err)
	}
	// SoftHSM 2.6 sets CKF_USER_PIN_COUNT_LOW after a wrong PIN, and never
	// FINAL_TRY or LOCKED.
	if pe.Locked || pe.FinalTry || !pe.Low || pe.Retries != -1 || pe.Earlier || !strings.Contains(pe.Device, "root-a") {
		t.Errorf("PINError = %+v", pe)
	}
	if strings.Contains(err.Error(), "not-the-pin") {
		t.Error("the error repeats the PIN")
	}
	// The second key on the token, a listing, another backend of the same
	// process, and even the right PIN: nothing more is sent to the token
	// in this run.
	good := open(t, hsm.Options{Getenv: func(k string) string {
		if k == hsm.PINEnv {
			return softhsm.PIN
		}
		return ""
	}})
	for i, try := range []func() error{
		func() error { _, err := b.Signer(bg, badURI("k2")); return err },
		func() error { _, err := b.List(bg, badURI("")); return err },
		func() error {
			_, err := good.List(bg, parse(t, "pkcs11:token=root-a?module-path="+env.ModulePath))
			return err
		},
	} {
		err := try()
		if !errors.As(err, &pe) || !pe.Earlier || !strings.Contains(err.Error(), "earlier in this run") {
			t.Fatalf("attempt %d after the refusal: %v", i+2, err)
		}
	}
	if s.count() != 1 {
		t.Fatalf("%d C_Login calls for one token after a wrong PIN, want 1", s.count())
	}
	if ti := tokenFlags(t, env, "root-a"); ti&pkcs11.CKF_USER_PIN_COUNT_LOW == 0 {
		t.Errorf("the token does not count the wrong PIN (flags %#x)", ti)
	}
	// The next run (every backend closed) logs in with the right PIN.
	b.Close()
	good.Close()
	next := open(t, hsm.Options{Getenv: func(k string) string {
		if k == hsm.PINEnv {
			return softhsm.PIN
		}
		return ""
	}})
	if _, err := next.List(bg, parse(t, "pkcs11:token=root-a?module-path="+env.ModulePath)); err != nil {
		t.Fatal(err)
	}
	next.Close()
	if s.count() != 2 {
		t.Errorf("%d logins, want 2", s.count())
	}
	// No PIN at all: the process must first log out (close all backends).
	_, err = open(t, hsm.Options{}).List(bg, parse(t, "pkcs11:token=root-a?module-path="+env.ModulePath))
	if !errors.Is(err, hsm.ErrNoPIN) {
		t.Fatalf("error %v, want ErrNoPIN", err)
	}
}

// tokenFlags reads the token's flags with a module of its own (in another
// process: pkcs11-tool), as an observer outside rootkeeper would.
func tokenFlags(t *testing.T, env *softhsm.Env, label string) uint {
	t.Helper()
	out, err := env.Tool(t, "--list-token-slots")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var flags uint
	seen := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "token label") {
			seen = strings.HasSuffix(line, ": "+label)
		}
		if seen && strings.HasPrefix(line, "token flags") {
			if strings.Contains(line, "user PIN count low") {
				flags |= pkcs11.CKF_USER_PIN_COUNT_LOW
			}
			if strings.Contains(line, "final user PIN try") {
				flags |= pkcs11.CKF_USER_PIN_FINAL_TRY
			}
			if strings.Contains(line, "user PIN locked") {
				flags |= pkcs11.CKF_USER_PIN_LOCKED
			}
			flags |= pkcs11.CKF_TOKEN_INITIALIZED
		}
	}
	if flags == 0 {
		t.Fatalf("token %s not in:\n%s", label, out)
	}
	return flags
}

// TestPINFlags makes the real SoftHSM token report the PIN flags SoftHSM
// never sets, through a spy beside the real driver.
func TestPINFlags(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	uri := env.URI("root-a", "")

	t.Run("locked", func(t *testing.T) {
		s := spyOn(t, env.ModulePath)
		s.addFlags = pkcs11.CKF_USER_PIN_LOCKED
		_, err := open(t, hsm.Options{ForceLastPINTry: true}).List(bg, parse(t, uri))
		var pe *hsm.PINError
		if !errors.As(err, &pe) || !pe.Locked || !errors.Is(err, hsm.ErrPINLocked) {
			t.Fatalf("error %v, want a locked PINError", err)
		}
		if s.count() != 0 {
			t.Error("a PIN was sent to a locked token")
		}
	})
	t.Run("final-try-refused", func(t *testing.T) {
		s := spyOn(t, env.ModulePath)
		s.addFlags = pkcs11.CKF_USER_PIN_FINAL_TRY | pkcs11.CKF_USER_PIN_COUNT_LOW
		var prompted bool
		_, err := open(t, hsm.Options{Prompt: func(context.Context, hsm.PINRequest) ([]byte, error) {
			prompted = true
			return []byte(softhsm.PIN), nil
		}}).List(bg, parse(t, "pkcs11:token=root-a?module-path="+env.ModulePath))
		var lt *hsm.LastTryError
		if !errors.As(err, &lt) {
			t.Fatalf("error %v, want LastTryError", err)
		}
		if s.count() != 0 || prompted {
			t.Error("a PIN was read or sent at the final try without --force-last-pin-try")
		}
	})
	t.Run("final-try-forced", func(t *testing.T) {
		s := spyOn(t, env.ModulePath)
		s.addFlags = pkcs11.CKF_USER_PIN_FINAL_TRY
		var req hsm.PINRequest
		var told []string
		_, err := open(t, hsm.Options{ForceLastPINTry: true,
			Notify: func(m string) { told = append(told, m) },
			Prompt: func(_ context.Context, r hsm.PINRequest) ([]byte, error) {
				req = r
				return []byte(softhsm.PIN), nil
			}}).List(bg, parse(t, "pkcs11:token=root-a?module-path="+env.ModulePath))
		if err != nil {
			t.Fatal(err)
		}
		if !req.Final || req.Retries != -1 || !strings.Contains(req.Device, "root-a") || s.count() != 1 {
			t.Errorf("request %+v, %d logins", req, s.count())
		}
		if len(told) == 0 || !strings.Contains(told[0], "final PIN try") {
			t.Errorf("told %q", told)
		}
	})
	t.Run("wrong-pin-at-final-try", func(t *testing.T) {
		s := spyOn(t, env.ModulePath)
		s.loginErr = pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)
		s.afterFail = pkcs11.CKF_USER_PIN_FINAL_TRY | pkcs11.CKF_USER_PIN_COUNT_LOW
		_, err := open(t, hsm.Options{}).List(bg, parse(t, uri))
		var pe *hsm.PINError
		if !errors.As(err, &pe) || !pe.FinalTry || !pe.Low || pe.Locked {
			t.Fatalf("error %v (%+v), want a final-try PINError", err, pe)
		}
		if !strings.Contains(pe.Hint(), "--force-last-pin-try") {
			t.Errorf("hint: %s", pe.Hint())
		}
	})
	t.Run("wrong-pin-locks", func(t *testing.T) {
		s := spyOn(t, env.ModulePath)
		s.loginErr = pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)
		s.afterFail = pkcs11.CKF_USER_PIN_LOCKED
		_, err := open(t, hsm.Options{}).List(bg, parse(t, uri))
		if !errors.Is(err, hsm.ErrPINLocked) {
			t.Fatalf("error %v, want ErrPINLocked", err)
		}
	})
	t.Run("low", func(t *testing.T) {
		s := spyOn(t, env.ModulePath)
		s.addFlags = pkcs11.CKF_USER_PIN_COUNT_LOW
		var req hsm.PINRequest
		_, err := open(t, hsm.Options{Prompt: func(_ context.Context, r hsm.PINRequest) ([]byte, error) {
			req = r
			return []byte(softhsm.PIN), nil
		}}).List(bg, parse(t, "pkcs11:token=root-a?module-path="+env.ModulePath))
		if err != nil || !req.Low || req.Final {
			t.Fatalf("request %+v, %v", req, err)
		}
	})
}

// TestLoginOnce opens several keys on one token: the PIN is read and sent
// once.
func TestLoginOnce(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a", "root-b")
	s := spyOn(t, env.ModulePath)
	var prompts int
	b := open(t, hsm.Options{Prompt: func(context.Context, hsm.PINRequest) ([]byte, error) {
		prompts++
		return []byte(softhsm.PIN), nil
	}})
	noPIN := func(label, object string) *hsm.URI {
		u := parse(t, env.URI(label, object))
		u.DelQuery("pin-source")
		return u
	}
	generate(t, b, noPIN("root-a", "k1").String(), hsm.ECDSAP256)
	generate(t, b, noPIN("root-a", "k2").String(), hsm.Ed25519)
	s1, err := b.Signer(bg, noPIN("root-a", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.Signer(bg, noPIN("root-a", "k2"))
	if err != nil {
		t.Fatal(err)
	}
	signVerify(t, s1, []byte("a"))
	signVerify(t, s2, []byte("b"))
	if s.count() != 1 || prompts != 1 {
		t.Fatalf("%d logins, %d prompts for one token", s.count(), prompts)
	}
	if _, err := b.List(bg, noPIN("root-b", "")); err != nil {
		t.Fatal(err)
	}
	if s.count() != 2 || prompts != 2 {
		t.Fatalf("%d logins, %d prompts for two tokens", s.count(), prompts)
	}
	// Another path to the same library is the same module.
	if resolved := moduleKey(env.ModulePath); resolved != env.ModulePath {
		u := noPIN("root-a", "k1")
		u.SetQuery("module-path", resolved)
		if _, err := b.Signer(bg, u); err != nil {
			t.Fatal(err)
		}
		if s.count() != 2 || len(b.modules) != 1 {
			t.Fatalf("%s and %s: %d logins, %d modules", env.ModulePath, resolved, s.count(), len(b.modules))
		}
	}

	// The Keyring reaches the backend through hsm.Register.
	kr := hsm.NewKeyring(hsm.Options{Getenv: noEnv})
	defer kr.Close()
	ks, err := kr.Signer(bg, env.URI("root-a", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	signVerify(t, ks, []byte("c"))
	if s.count() != 2 {
		t.Errorf("a second backend on a logged-in token logged in again (%d logins)", s.count())
	}
}

func TestConcurrentSignAndClose(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	generate(t, b, env.URI("root-a", "k"), hsm.ECDSAP256)
	generate(t, b, env.URI("root-a", "e"), hsm.Ed25519)
	s1, err := b.Signer(bg, parse(t, env.URI("root-a", "k")))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.Signer(bg, parse(t, env.URI("root-a", "e")))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				signVerify(t, s1, []byte{byte(i), byte(j)})
				signVerify(t, s2, []byte{byte(i), byte(j)})
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = s1.Sign(nil, digest(crypto.SHA256, nil), crypto.SHA256)
	wantKind(t, err, hsm.ErrDevice)
	_, err = b.Signer(bg, parse(t, env.URI("root-a", "k")))
	wantKind(t, err, hsm.ErrDevice)
}

// TestAlwaysAuthenticate signs with a key that needs the PIN for each
// signature (CKA_ALWAYS_AUTHENTICATE, as PIV signature keys through
// ykcs11 have).
func TestAlwaysAuthenticate(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	if out, err := env.Tool(t, append(env.Login("root-a"), "--keypairgen", "--key-type", "EC:prime256v1", "--label", "aa", "--id", "aa", "--always-auth")...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := spyOn(t, env.ModulePath)
	b := open(t, hsm.Options{})
	k, err := b.Signer(bg, parse(t, env.URI("root-a", "aa")))
	if err != nil {
		t.Fatal(err)
	}
	if !k.(*Signer).alwaysAuthn {
		t.Skip("SoftHSM did not keep CKA_ALWAYS_AUTHENTICATE")
	}
	signVerify(t, k, []byte("a"))
	signVerify(t, k, []byte("b"))
	if s.count() != 3 {
		t.Errorf("%d logins, want 1 user and 2 context-specific", s.count())
	}
}

// TestAlwaysAuthenticateCancelled: the PIN asked before each signature of
// a CKA_ALWAYS_AUTHENTICATE key stops when the officer presses Ctrl-C (the
// context the key was opened with is cancelled): nothing is sent.
func TestAlwaysAuthenticateCancelled(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	if out, err := env.Tool(t, append(env.Login("root-a"), "--keypairgen", "--key-type", "EC:prime256v1", "--label", "aa", "--id", "aa", "--always-auth")...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := spyOn(t, env.ModulePath)
	b := open(t, hsm.Options{})
	ctx, cancel := context.WithCancel(bg)
	k, err := b.Signer(ctx, parse(t, env.URI("root-a", "aa")))
	if err != nil {
		t.Fatal(err)
	}
	if !k.(*Signer).alwaysAuthn {
		t.Skip("SoftHSM did not keep CKA_ALWAYS_AUTHENTICATE")
	}
	before := s.count()
	cancel()
	h := sha256.Sum256([]byte("a"))
	if _, err := k.Sign(nil, h[:], crypto.SHA256); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Sign after Ctrl-C: %v, want the cancellation", err)
	}
	if s.count() != before {
		t.Errorf("%d logins after Ctrl-C, want none", s.count()-before)
	}
}
