package notary

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Notary's key types (tuf/data/types.go).
const (
	keyED25519   = "ed25519"
	keyRSA       = "rsa"
	keyRSAx509   = "rsa-x509"
	keyECDSA     = "ecdsa"
	keyECDSAx509 = "ecdsa-x509"
)

const minRSABits = 2048 // notary.MinRSABitSize, signed/verifiers.go

// keyID is Notary's key id: the SHA-256 of the canonical JSON of the key
// with a null private part (tuf/data/keys.go TUFKey.ID), hex.
func keyID(keytype string, public []byte) string {
	var b bytes.Buffer
	b.WriteString(`{"keytype":`)
	canonicalString(&b, keytype)
	b.WriteString(`,"keyval":{"private":null,"public":"`)
	b.WriteString(base64.StdEncoding.EncodeToString(public))
	b.WriteString(`"}}`)
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:])
}

func (k *key) id() string { return keyID(k.Type, k.Value.Public) }

// cryptoKey is the public key a verifier uses: from the first certificate
// of the PEM for the x509 types, DER SubjectPublicKeyInfo for ecdsa and
// rsa, the raw key for ed25519.
func (k *key) cryptoKey() (crypto.PublicKey, error) {
	switch k.Type {
	case keyECDSAx509, keyRSAx509:
		block, _ := pem.Decode(k.Value.Public)
		if block == nil {
			return nil, errors.New("no PEM certificate in the key")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	case keyECDSA, keyRSA:
		return x509.ParsePKIXPublicKey(k.Value.Public)
	case keyED25519:
		if len(k.Value.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("ed25519 public key has %d bytes", len(k.Value.Public))
		}
		return ed25519.PublicKey(k.Value.Public), nil
	}
	return nil, fmt.Errorf("unknown key type %q", k.Type)
}

// verifySig checks one signature by Notary's verifier for its method
// (tuf/signed/verifiers.go).
func verifySig(k *key, method string, sig, msg []byte) error {
	pub, err := k.cryptoKey()
	if err != nil {
		return err
	}
	digest := sha256.Sum256(msg)
	switch method {
	case "eddsa":
		edk, ok := pub.(ed25519.PublicKey)
		if k.Type != keyED25519 || !ok || len(sig) != ed25519.SignatureSize || !ed25519.Verify(edk, msg, sig) {
			return errors.New("invalid eddsa signature")
		}
	case "ecdsa":
		// Raw r‖s of twice the curve's byte length, over SHA-256 whatever
		// the curve.
		ek, ok := pub.(*ecdsa.PublicKey)
		if !ok || (k.Type != keyECDSA && k.Type != keyECDSAx509) {
			return errors.New("ecdsa signature by a key that is not ECDSA")
		}
		n := (ek.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return fmt.Errorf("ecdsa signature of %d bytes, not %d (raw r||s)", len(sig), 2*n)
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		if !ecdsa.Verify(ek, digest[:], r, s) {
			return errors.New("invalid ecdsa signature")
		}
	case "rsapss", "rsapkcs1v15", "pycrypto-pkcs#1 pss":
		return verifyRSA(k, pub, method, sig, digest[:])
	default:
		return fmt.Errorf("signing method %q is not supported", method)
	}
	return nil
}

func verifyRSA(k *key, pub crypto.PublicKey, method string, sig, digest []byte) error {
	if method == "pycrypto-pkcs#1 pss" { // a PEM public key (RSAPyCryptoVerifier)
		block, _ := pem.Decode(k.Value.Public)
		if k.Type != keyRSA || block == nil {
			return errors.New("pycrypto signature by a key that is not a PEM RSA key")
		}
		var err error
		if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return err
		}
	} else if k.Type != keyRSA && k.Type != keyRSAx509 {
		return errors.New("RSA signature by a key that is not RSA")
	}
	rk, ok := pub.(*rsa.PublicKey)
	if !ok {
		return errors.New("RSA signature by a key that is not RSA")
	}
	if rk.N.BitLen() < minRSABits || len(sig) < minRSABits/8 {
		return fmt.Errorf("RSA keys and signatures under %d bits are not accepted", minRSABits)
	}
	if method == "rsapkcs1v15" {
		return rsa.VerifyPKCS1v15(rk, crypto.SHA256, digest, sig)
	}
	return rsa.VerifyPSS(rk, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256})
}

// verifySignatures is signed.VerifySignatures: at least threshold distinct
// key ids of keys with a valid signature over the canonical payload. A
// signature whose key id is not the recomputed id of its key fails it all.
func verifySignatures(e *envelope, keys map[string]*key, threshold int) error {
	if len(e.Signatures) == 0 {
		return errors.New("it has no signatures")
	}
	if threshold < 1 {
		return fmt.Errorf("threshold %d", threshold)
	}
	msg, err := canonical(e.Signed)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	var failed []string
	for _, s := range e.Signatures {
		k := keys[s.KeyID]
		if k == nil {
			continue
		}
		if k.id() != s.KeyID {
			return fmt.Errorf("key id %s is not the id of its key (recomputed %s)", short(s.KeyID), short(k.id()))
		}
		if err := verifySig(k, s.Method, s.Signature, msg); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", short(s.KeyID), err))
			continue
		}
		valid[s.KeyID] = true
	}
	if len(valid) < threshold {
		msg := fmt.Sprintf("%d of %d required valid signatures", len(valid), threshold)
		if len(failed) > 0 {
			msg += " (" + strings.Join(failed, "; ") + ")"
		}
		return errors.New(msg)
	}
	return nil
}

// certKey is a root key rebuilt from its certificates, as Notary does
// (trustpinning.parseAllCerts, utils.CertBundleToKey).
type certKey struct {
	leaf *x509.Certificate
	ints []*x509.Certificate // intermediates (CA certificates of the bundle)
}

// parseCertKey reads a root key's certificate bundle: every PEM block a
// certificate, exactly one leaf, the leaf first.
func parseCertKey(k *key) (*certKey, error) {
	var certs []*x509.Certificate
	rest := k.Value.Public
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q is not a certificate", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	ck := &certKey{}
	for _, c := range certs {
		if c.IsCA {
			ck.ints = append(ck.ints, c)
		} else if ck.leaf == nil {
			ck.leaf = c
		} else {
			return nil, errors.New("more than one leaf certificate")
		}
	}
	if ck.leaf == nil || certs[0].IsCA {
		return nil, errors.New("the first certificate must be the (only) leaf certificate")
	}
	return ck, nil
}

// key is the TUF key Notary makes of the bundle: the leaf and the given
// intermediates re-encoded as PEM, typed by the leaf's algorithm.
func (c *certKey) key(ints []*x509.Certificate) (*key, error) {
	var b bytes.Buffer
	for _, cert := range append([]*x509.Certificate{c.leaf}, ints...) {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	k := &key{}
	switch c.leaf.PublicKeyAlgorithm {
	case x509.RSA:
		k.Type = keyRSAx509
	case x509.ECDSA:
		k.Type = keyECDSAx509
	default:
		return nil, fmt.Errorf("certificate key algorithm %v is not supported", c.leaf.PublicKeyAlgorithm)
	}
	k.Value.Public = b.Bytes()
	return k, nil
}

// validateCert is utils.ValidateCertificate: a sane validity window, no
// SHA-1, RSA of at least 2048 bits, and, if checkExpiry, valid at at
// (a day's leeway on NotBefore).
func validateCert(c *x509.Certificate, checkExpiry bool, at time.Time) error {
	cn := c.Subject.CommonName
	if c.NotBefore.After(c.NotAfter) {
		return fmt.Errorf("certificate %q has an invalid validity window", cn)
	}
	switch c.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return fmt.Errorf("certificate %q is signed with SHA-1", cn)
	}
	if rk, ok := c.PublicKey.(*rsa.PublicKey); ok && rk.N.BitLen() < minRSABits {
		return fmt.Errorf("certificate %q has an RSA key of %d bits", cn, rk.N.BitLen())
	}
	if checkExpiry && (at.AddDate(0, 0, 1).Before(c.NotBefore) || at.After(c.NotAfter)) {
		return fmt.Errorf("certificate %q is expired or not yet valid (valid %s to %s)", cn,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// matchCN is trustpinning.MatchCNToGun: equal, or a prefix ending in '*'.
func matchCN(cn, gun string) bool {
	if strings.HasSuffix(cn, "*") {
		return strings.HasPrefix(gun, strings.TrimRight(cn, "*"))
	}
	return cn == gun
}

// CanonicalID is the id of a certificate's public key alone, what
// `notary key list` prints (utils.CanonicalKeyID).
func canonicalID(c *x509.Certificate) string {
	der, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		return ""
	}
	t := keyECDSA
	if c.PublicKeyAlgorithm == x509.RSA {
		t = keyRSA
	}
	return keyID(t, der)
}
