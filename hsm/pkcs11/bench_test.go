package pkcs11

import (
	"crypto"
	"crypto/rsa"
	"encoding/hex"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// BenchmarkSign compares one signature through rootkeeper's Signer with a
// bare C_SignInit and C_Sign on the same SoftHSM key.
func BenchmarkSign(b *testing.B) {
	env := softhsm.NewTokens(b, "bench")
	be := open(b, hsm.Options{})
	for _, tc := range []struct {
		name string
		alg  hsm.Algorithm
	}{
		{"p256", hsm.ECDSAP256},
		{"ed25519", hsm.Ed25519},
		{"rsa3072", hsm.RSA3072},
	} {
		info := generate(b, be, env.URI("bench", tc.name), tc.alg)
		s, err := be.Signer(bg, parse(b, env.URI("bench", tc.name)))
		if err != nil {
			b.Fatal(err)
		}
		var data []byte
		var opts crypto.SignerOpts
		var mech *pkcs11.Mechanism
		switch tc.alg {
		case hsm.ECDSAP256:
			data, opts, mech = digest(crypto.SHA256, []byte("m")), crypto.SHA256, pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
		case hsm.Ed25519:
			data, opts, mech = []byte("a TUF root.json of a few kilobytes, more or less"), crypto.Hash(0), pkcs11.NewMechanism(ckmEdDSA, nil)
		case hsm.RSA3072:
			data = digest(crypto.SHA256, []byte("m"))
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, 32))
		}
		b.Run(tc.name+"/rootkeeper", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Sign(nil, data, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/raw", func(b *testing.B) {
			p11, tok := raw(b, be, env.URI("bench", ""))
			sh, err := p11.OpenSession(tok.slot, pkcs11.CKF_SERIAL_SESSION)
			if err != nil {
				b.Fatal(err)
			}
			defer p11.CloseSession(sh)
			id, _ := hex.DecodeString(info.ID)
			priv := findOne(b, p11, sh, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id))
			m := []*pkcs11.Mechanism{mech}
			for b.Loop() {
				if err := p11.SignInit(sh, m, priv); err != nil {
					b.Fatal(err)
				}
				if _, err := p11.Sign(sh, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
