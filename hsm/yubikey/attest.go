package yubikey

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// ErrAttestation is the kind of error (for errors.Is) of an attestation
// that does not prove what it must: a chain that does not lead to the
// trusted roots, or a certificate about another key, device or slot.
var ErrAttestation = errors.New("attestation does not verify")

// RootsYubico is the Evidence.Roots value of a chain verified against
// Yubico's PIV attestation roots (those piv-go embeds).
const RootsYubico = "yubico"

// FixedFirmware is the first firmware without YSA-2024-03 (the ECDSA side
// channel known as EUCLEAK): keys on older YubiKeys are recorded with a
// warning and should be replaced.
var FixedFirmware = [3]byte{5, 7, 0}

// ReadAttestationRoots reads the PEM certificates in file, to be passed as
// hsm.Options.AttestationRoots. name lists their SHA-256 fingerprints
// ("sha256:<hex>", comma-separated). Only an officer's explicit choice
// (--attestation-roots) may put roots other than Yubico's in place.
func ReadAttestationRoots(file string) (pool *x509.CertPool, name string, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", &hsm.Error{Kind: hsm.ErrUnsupported, Detail: "cannot read the attestation roots", Err: err,
			HintText: "--attestation-roots names a PEM file of CA certificates"}
	}
	pool = x509.NewCertPool()
	var names []string
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, "", &hsm.Error{Kind: hsm.ErrUnsupported, Detail: "a certificate in " + file + " cannot be parsed", Err: err,
				HintText: "--attestation-roots names a PEM file of CA certificates"}
		}
		pool.AddCert(cert)
		names = append(names, Fingerprint(cert))
	}
	if len(names) == 0 {
		return nil, "", &hsm.Error{Kind: hsm.ErrUnsupported, Detail: file + " holds no PEM certificate",
			HintText: "--attestation-roots names a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)"}
	}
	return pool, strings.Join(names, ","), nil
}

// Fingerprint names a certificate as Evidence.Roots records an explicit
// root: "sha256:" and the hex SHA-256 of its DER encoding.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// expectation is what an attestation must say to be about the key in use.
type expectation struct {
	serial uint32
	slot   piv.Slot
	pub    crypto.PublicKey
	uri    string
}

// verifier checks attestations against the roots the officer chose.
type verifier struct {
	roots     *x509.CertPool // nil: Yubico's
	rootsName string
}

func (v verifier) describeRoots() string {
	if v.roots == nil {
		return "Yubico's PIV attestation roots"
	}
	name := v.rootsName
	if name == "" {
		name = "the given certificates"
	}
	return "the attestation roots given with --attestation-roots (" + name + ")"
}

// chain verifies the slot certificate and the device's attestation (F9)
// certificate up to the roots, and returns what the slot certificate
// states and which root it leads to.
func (v verifier) chain(slotCert, f9 *x509.Certificate) (*piv.Attestation, string, error) {
	if v.roots == nil {
		a, err := piv.Verify(f9, slotCert)
		return a, RootsYubico, err
	}
	a, err := (&piv.Verifier{Roots: v.roots}).Verify(f9, slotCert)
	if err != nil {
		return nil, "", err
	}
	inter := x509.NewCertPool()
	inter.AddCert(f9)
	chains, err := slotCert.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil || len(chains) == 0 {
		return nil, "", fmt.Errorf("cannot find the root of the verified chain: %v", err)
	}
	c := chains[0]
	return a, Fingerprint(c[len(c)-1]), nil
}

// check verifies an attestation and then what piv.Verify does not: that
// it is about the key in use, on the device and in the slot the URI names.
// It returns the evidence to record.
func (v verifier) check(slotCert, f9 *x509.Certificate, want expectation) (*hsm.Evidence, error) {
	a, roots, err := v.chain(slotCert, f9)
	where := fmt.Sprintf("the attestation of slot %s on %s", slotName(want.slot), deviceName(want.serial))
	if err != nil {
		hint := "a genuine YubiKey's attestation chains to Yubico's PIV roots: do not use this device for root keys; " +
			"for a test device or an organization's own attestation CA, pass its root certificate with --attestation-roots FILE"
		if v.roots != nil {
			hint = "check that the file given with --attestation-roots holds the root of this device's attestation certificate"
		}
		return nil, &hsm.Error{Kind: ErrAttestation, URI: want.uri,
			Detail: fmt.Sprintf("%s does not chain to %s", where, v.describeRoots()), Err: err, HintText: hint}
	}
	mismatch := func(detail string) error {
		return &hsm.Error{Kind: ErrAttestation, URI: want.uri, Detail: where + " " + detail,
			HintText: "do not use this key: the device or its answers are not what the URI names; check serial= and slot=, and generate the key again with rootkeeper key generate"}
	}
	if a.Serial != want.serial {
		return nil, mismatch(fmt.Sprintf("is for serial %d", a.Serial))
	}
	if a.Slot.Key == 0 {
		return nil, mismatch(fmt.Sprintf("names no slot (subject %q)", slotCert.Subject.CommonName))
	}
	if a.Slot.Key != want.slot.Key {
		return nil, mismatch("is for slot " + slotName(a.Slot))
	}
	if !samePublic(slotCert.PublicKey, want.pub) {
		return nil, mismatch("is for another key than the one in use (the public keys differ)")
	}
	ev := &hsm.Evidence{
		Kind:         hsm.EvidencePIV,
		Serial:       a.Serial,
		Slot:         slotName(a.Slot),
		Firmware:     fmt.Sprintf("%d.%d.%d", a.Version.Major, a.Version.Minor, a.Version.Patch),
		PINPolicy:    pinPolicyName(a.PINPolicy),
		TouchPolicy:  touchPolicyName(a.TouchPolicy),
		Certificates: [][]byte{slotCert.Raw, f9.Raw},
		Roots:        roots,
	}
	if a.Formfactor != 0 {
		ev.FormFactor = a.Formfactor.String()
	}
	return ev, nil
}

// VulnerableFirmware reports whether firmware (as in Evidence.Firmware)
// is older than FixedFirmware (YSA-2024-03).
func VulnerableFirmware(firmware string) bool {
	var v [3]int
	if n, _ := fmt.Sscanf(firmware, "%d.%d.%d", &v[0], &v[1], &v[2]); n != 3 {
		return false
	}
	return !atLeast([3]byte{byte(v[0]), byte(v[1]), byte(v[2])}, FixedFirmware[0], FixedFirmware[1], FixedFirmware[2])
}

// VerifyEvidence re-checks recorded PIV evidence, as rootkeeper verify and
// status do for every key the repository keeps: the certificate chain (to
// Yubico's roots, or for evidence recorded with an explicit root, to that
// root among the backend's hsm.Options.AttestationRoots), and that the
// recorded serial, slot, firmware and policies are what the certificate
// states. It returns the attested public key, which the caller compares
// with the key the repository trusts.
//
// Evidence recorded with an explicit root cannot be re-checked without it:
// the error is then of kind hsm.ErrUnsupported.
func (b *Backend) VerifyEvidence(ev *hsm.Evidence) (crypto.PublicKey, error) {
	if ev == nil || ev.Kind != hsm.EvidencePIV {
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, Detail: "not PIV attestation evidence"}
	}
	where := fmt.Sprintf("recorded attestation of slot %s on %s", ev.Slot, deviceName(ev.Serial))
	if len(ev.Certificates) < 2 {
		return nil, &hsm.Error{Kind: ErrAttestation, Detail: where + ": no attestation certificates were recorded"}
	}
	slotCert, err := x509.ParseCertificate(ev.Certificates[0])
	if err != nil {
		return nil, &hsm.Error{Kind: ErrAttestation, Detail: where + ": the slot certificate cannot be parsed", Err: err}
	}
	f9, err := x509.ParseCertificate(ev.Certificates[1])
	if err != nil {
		return nil, &hsm.Error{Kind: ErrAttestation, Detail: where + ": the attestation (F9) certificate cannot be parsed", Err: err}
	}
	v := verifier{}
	switch {
	case ev.Roots == RootsYubico:
	case strings.HasPrefix(ev.Roots, "sha256:"):
		if b.opts.AttestationRoots == nil {
			return nil, &hsm.Error{Kind: hsm.ErrUnsupported,
				Detail:   fmt.Sprintf("%s was verified against an explicitly given root (%s), not Yubico's", where, ev.Roots),
				HintText: "pass that root certificate again with --attestation-roots FILE to re-check it"}
		}
		v = verifier{roots: b.opts.AttestationRoots, rootsName: b.opts.AttestationRootsName}
	default:
		return nil, &hsm.Error{Kind: ErrAttestation, Detail: fmt.Sprintf("%s names unknown roots %q", where, ev.Roots)}
	}
	a, roots, err := v.chain(slotCert, f9)
	if err != nil {
		return nil, &hsm.Error{Kind: ErrAttestation, Detail: fmt.Sprintf("%s does not chain to %s", where, v.describeRoots()), Err: err}
	}
	if roots != ev.Roots {
		return nil, &hsm.Error{Kind: ErrAttestation, Detail: fmt.Sprintf("%s chains to %s, but %s was recorded", where, roots, ev.Roots),
			HintText: "the record was changed after the ceremony: restore keys/ from the repository's history"}
	}
	var wrong []string
	cmp := func(field, recorded, attested string) {
		if recorded != attested {
			wrong = append(wrong, fmt.Sprintf("%s %q (the certificate says %q)", field, recorded, attested))
		}
	}
	cmp("serial", fmt.Sprint(ev.Serial), fmt.Sprint(a.Serial))
	cmp("slot", ev.Slot, slotName(a.Slot))
	cmp("firmware", ev.Firmware, fmt.Sprintf("%d.%d.%d", a.Version.Major, a.Version.Minor, a.Version.Patch))
	cmp("pin_policy", ev.PINPolicy, pinPolicyName(a.PINPolicy))
	cmp("touch_policy", ev.TouchPolicy, touchPolicyName(a.TouchPolicy))
	if len(wrong) > 0 {
		return nil, &hsm.Error{Kind: ErrAttestation, Detail: where + " records " + strings.Join(wrong, ", "),
			HintText: "the record was changed after the ceremony: restore keys/ from the repository's history"}
	}
	return slotCert.PublicKey, nil
}

// samePublic compares two public keys.
func samePublic(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && ka.Equal(b)
}

func pinPolicyName(p piv.PINPolicy) string {
	switch p {
	case piv.PINPolicyNever:
		return "never"
	case piv.PINPolicyOnce:
		return "once"
	case piv.PINPolicyAlways:
		return "always"
	case piv.PINPolicyMatchOnce:
		return "match-once"
	case piv.PINPolicyMatchAlways:
		return "match-always"
	}
	return fmt.Sprintf("unknown(%d)", int(p))
}

func touchPolicyName(p piv.TouchPolicy) string {
	switch p {
	case piv.TouchPolicyNever:
		return "never"
	case piv.TouchPolicyAlways:
		return "always"
	case piv.TouchPolicyCached:
		return "cached"
	}
	return fmt.Sprintf("unknown(%d)", int(p))
}
