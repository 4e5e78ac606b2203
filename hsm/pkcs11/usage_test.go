package pkcs11

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// TestKeyUsage reads what a private key allows besides signing: nothing
// for keys rootkeeper generates, decrypt, unwrap or derive for keys made
// around it.
func TestKeyUsage(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	own := generate(t, b, env.URI("root-a", "own"), hsm.ECDSAP256)
	if e := own.Evidence; len(e.OtherUses()) > 0 || e.SignRecover {
		t.Errorf("rootkeeper's key allows %v (sign_recover %t)", e.OtherUses(), e.SignRecover)
	}
	if strings.Contains(own.Evidence.Summary(), "also allows") {
		t.Errorf("summary: %s", own.Evidence.Summary())
	}
	b.Close()
	// SoftHSM gives a private key CKA_DECRYPT, CKA_UNWRAP and
	// CKA_SIGN_RECOVER unless its template says otherwise, as pkcs11-tool's
	// does not.
	for i, tc := range []struct {
		label string
		usage []string
		want  string
	}{
		{"default", nil, "decrypt, unwrap, sign-recover"},
		{"dec", []string{"--usage-decrypt"}, "decrypt"},
		{"der", []string{"--usage-derive"}, "derive"},
		{"wrap", []string{"--usage-wrap"}, "unwrap"},
	} {
		args := append(env.Login("root-a"), "--keypairgen", "--key-type", "EC:prime256v1", "--label", tc.label, "--id", fmt.Sprintf("%02x", 0xa0+i), "--usage-sign")
		if out, err := env.Tool(t, append(args, tc.usage...)...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		b := open(t, hsm.Options{})
		ev, err := b.Attest(bg, parse(t, env.URI("root-a", tc.label)))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ev.Summary(), "the private key also allows ") || !strings.Contains(ev.Summary(), tc.want) || len(ev.OtherUses()) == 0 {
			t.Errorf("%s: %s", tc.label, ev.Summary())
		}
		b.Close()
	}
}
