package pivcard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// Object identifiers of the Yubico attestation extensions, as parsed by
// piv-go's Verifier (1.3.6.1.4.1.41482.3.x).
var (
	oidFirmware   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 3}
	oidSerial     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidPolicy     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
	oidFormFactor = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 9}
)

// CA is a test attestation root standing in for Yubico's PIV root CA. It
// issues the certificate of each emulated card's attestation key (slot F9).
//
// Production code must trust a CA's certificate only when an operator
// explicitly passes it, never by default.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a test attestation CA with a fresh P-256 key, valid from one
// hour ago for 30 years.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "rootkeeper TEST PIV Attestation Root CA (not Yubico)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(30, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key}, nil
}

// Certificate returns the CA's self-signed root certificate.
func (ca *CA) Certificate() *x509.Certificate {
	return ca.cert
}

// CertPool returns a pool holding only the CA's certificate, suitable for
// piv.Verifier{Roots: ca.CertPool()}.
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// PEM returns the CA's certificate PEM-encoded.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// issueAttestationKey creates a card's slot-F9 attestation certificate for
// key, as Yubico does at manufacturing time.
func (ca *CA) issueAttestationKey(key crypto.Signer, serial uint32) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("Yubico PIV Attestation (TEST card %d)", serial)},
		NotBefore:             ca.cert.NotBefore,
		NotAfter:              ca.cert.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// attestationInfo is what a slot attestation certificate states.
type attestationInfo struct {
	slot        byte
	pub         crypto.PublicKey
	firmware    [3]byte
	serial      uint32
	pinPolicy   byte
	touchPolicy byte
	formFactor  byte
}

// attest issues the attestation certificate for a key generated in a slot,
// signed by the card's attestation key, with the Yubico extensions.
func attest(attCert *x509.Certificate, attKey crypto.Signer, info attestationInfo) ([]byte, error) {
	serialDER, err := asn1.Marshal(int64(info.serial))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("YubiKey PIV Attestation %02x", info.slot)},
		NotBefore:    attCert.NotBefore,
		NotAfter:     attCert.NotAfter,
		ExtraExtensions: []pkix.Extension{
			{Id: oidFirmware, Value: info.firmware[:]},
			{Id: oidSerial, Value: serialDER},
			{Id: oidPolicy, Value: []byte{info.pinPolicy, info.touchPolicy}},
			{Id: oidFormFactor, Value: []byte{info.formFactor}},
		},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, attCert, info.pub, attKey)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}
