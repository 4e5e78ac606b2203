package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// BenchmarkSignRoot measures rootkeeper's whole TUF signing path for one
// root metadata signature on SoftHSM: canonical JSON, the sigstore signer
// adapter, the signature inside the token (PKCS#11), the DER conversion,
// and the verification of the signature right after it is made. Compare
// with BenchmarkSign/*/raw in hsm/pkcs11 (a bare C_SignInit+C_Sign loop):
// softhsm-test/bench.sh prints the ratio.
func BenchmarkSignRoot(b *testing.B) {
	env := softhsm.NewTokens(b, "bench")
	kr := hsm.NewKeyring(hsm.Options{})
	defer kr.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		alg  hsm.Algorithm
	}{{"p256", hsm.ECDSAP256}, {"ed25519", hsm.Ed25519}, {"rsa3072", hsm.RSA3072}} {
		uri := env.URI("bench", tc.name)
		if _, err := kr.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: tc.alg}); err != nil {
			b.Fatal(err)
		}
		hw, err := kr.Signer(ctx, uri)
		if err != nil {
			b.Fatal(err)
		}
		s, err := roles.NewSigner(hw)
		if err != nil {
			b.Fatal(err)
		}
		root := metadata.Root(time.Now().Add(365 * 24 * time.Hour))
		for _, r := range []string{"root", "targets", "snapshot", "timestamp"} {
			if err := root.Signed.AddKey(s.Key(), r); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				root.Signatures = nil
				if err := roles.Sign(root, s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
