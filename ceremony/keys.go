package ceremony

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// KeyView is a hardware key as officers and scripts see it.
type KeyView struct {
	URI       string        `json:"uri"`
	KeyID     string        `json:"keyid"`
	Algorithm string        `json:"algorithm"`
	Scheme    string        `json:"scheme"`
	PublicKey string        `json:"public_key"`
	Label     string        `json:"label,omitempty"`
	ID        string        `json:"id,omitempty"`
	Hardware  bool          `json:"hardware_born"`
	Evidence  *hsm.Evidence `json:"evidence,omitempty"`
	Warnings  []string      `json:"warnings,omitempty"`
}

// DescribeKey computes a key's TUF identity from its public key.
func DescribeKey(info hsm.KeyInfo) (*KeyView, error) {
	k, err := roles.PublicKey(info.Public)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", info.URI, err)
	}
	id, err := roles.KeyID(k)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(info.Public)
	if err != nil {
		return nil, err
	}
	v := &KeyView{URI: info.URI, KeyID: id, Algorithm: string(info.Algorithm), Scheme: k.Scheme,
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		Label:     info.Label, ID: info.ID, Evidence: info.Evidence, Hardware: info.Evidence.HardwareBorn()}
	if info.Algorithm == hsm.ECDSAP384 {
		v.Warnings = append(v.Warnings, "ecdsa-sha2-nistp384: clients on tuf-js 5.0.1 or older (@tufjs/models < 5.0.2) verify ECDSA with SHA-256 and reject these signatures")
	}
	v.Warnings = append(v.Warnings, evidenceWarnings(info.Evidence)...)
	if info.Evidence != nil && !v.Hardware {
		v.Warnings = append(v.Warnings, "the device does not show this key was generated inside it and can never leave it: "+info.Evidence.Summary())
	}
	return v, nil
}

// ShowKey opens the key at uri (reading its public part and evidence) and
// describes it.
func (s *Session) ShowKey(ctx context.Context, uri string) (*KeyView, error) {
	k, err := s.Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	info := k.HW.Info()
	info.Evidence = k.Evidence
	return DescribeKey(info)
}
