package ceremony

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// KeyExportFormat is the version of the key export file.
const KeyExportFormat = 1

// ExportedKey is rootkeeper key export's file: a key's public part, the
// hardware's evidence for it and the device that holds it, for a plan on
// another machine (remote bootstrap: a plan names it by file:PATH).
type ExportedKey struct {
	Format    int    `json:"rootkeeper_key_export"`
	KeyID     string `json:"keyid"`
	URI       string `json:"uri"` // the key's object, no query
	Algorithm string `json:"algorithm"`
	Scheme    string `json:"scheme"`
	PublicKey string `json:"public_key"`
	// Device is the device as it reported itself.
	Device     string        `json:"device,omitempty"`
	Evidence   *hsm.Evidence `json:"evidence"`
	ExportedAt time.Time     `json:"exported_at"`

	file string // where it was read from
}

// ExportKey opens the key at uri and describes it for export.
func (s *Session) ExportKey(ctx context.Context, uri string) (*ExportedKey, error) {
	k, err := s.Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	info := k.HW.Info()
	info.Evidence = k.Evidence
	v, err := DescribeKey(info)
	if err != nil {
		return nil, err
	}
	return &ExportedKey{Format: KeyExportFormat, KeyID: v.KeyID, URI: objectOf(uri), Algorithm: v.Algorithm, Scheme: v.Scheme,
		PublicKey: v.PublicKey, Device: deviceIdentity(k), Evidence: k.Evidence, ExportedAt: s.now().Truncate(time.Second)}, nil
}

// Write writes the export file atomically.
func (e *ExportedKey) Write(path string) error {
	data, err := marshalJSON(e)
	if err != nil {
		return err
	}
	return writeAtomic(path, data)
}

// ExportError is a key export file that cannot be used.
type ExportError struct {
	File, Detail string
}

func (e *ExportError) Error() string { return fmt.Sprintf("key export %s: %s", e.File, e.Detail) }

// Hint says what to do.
func (e *ExportError) Hint() string {
	return "ask the officer to run rootkeeper key export URI --out FILE on the machine with the device and send the file again"
}

// ReadExportedKey reads a key export file strictly and checks it by
// itself: the key id recomputed from the public key. CheckExportedKey
// checks the evidence.
func ReadExportedKey(path string) (*ExportedKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ExportError{File: path, Detail: err.Error()}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, &ExportError{File: path, Detail: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e ExportedKey
	if err := dec.Decode(&e); err != nil {
		return nil, &ExportError{File: path, Detail: "does not parse: " + err.Error()}
	}
	if e.Format != KeyExportFormat {
		return nil, &ExportError{File: path, Detail: fmt.Sprintf("format version %d; this rootkeeper reads %d", e.Format, KeyExportFormat)}
	}
	pub, err := parsePublicPEM(e.PublicKey)
	if err != nil {
		return nil, &ExportError{File: path, Detail: "the public key cannot be read: " + err.Error()}
	}
	id, err := keyIDOf(pub)
	if err != nil {
		return nil, &ExportError{File: path, Detail: err.Error()}
	}
	if id != e.KeyID {
		return nil, &ExportError{File: path, Detail: fmt.Sprintf("the public key has key id %s, not the %s the file states", short(id), short(e.KeyID))}
	}
	return &e, nil
}

// CheckExportedKey checks an exported key's evidence against require,
// without the device: a YubiKey attestation chain is verified again
// (against Yubico's roots or --attestation-roots, by the backend of the
// key's URI scheme through keys) and must certify this public key;
// PKCS#11 attribute readings, which only the token can vouch for, must
// show a key born in it (hardware-born). A root key that may also
// decrypt, unwrap or derive is refused.
func CheckExportedKey(path string, e *ExportedKey, role, require string, keys backendSource) error {
	ev := e.Evidence
	if uses := ev.OtherUses(); role == RoleRoot && len(uses) > 0 && require != RequireNone {
		return &EvidenceError{URI: e.URI + " (" + path + ")", Require: RequireHardwareBorn, Summary: "the private key also allows " + fmt.Sprint(uses)}
	}
	if require == RequireNone {
		return nil
	}
	if ev != nil && ev.Kind == hsm.EvidencePIV {
		if err := verifyExportedAttestation(path, e, keys); err != nil {
			return err
		}
	} else if require == RequireHardwareAttested {
		return &EvidenceError{URI: e.URI + " (" + path + ")", Require: require, Summary: ev.Summary()}
	}
	if !ev.HardwareBorn() {
		return &EvidenceError{URI: e.URI + " (" + path + ")", Require: RequireHardwareBorn, Summary: ev.Summary()}
	}
	return nil
}

func verifyExportedAttestation(path string, e *ExportedKey, keys backendSource) error {
	u, err := hsm.ParseURI(e.URI)
	if err != nil {
		return &ExportError{File: path, Detail: "the key URI does not parse: " + err.Error()}
	}
	var v EvidenceVerifier
	if keys != nil {
		if b, err := keys.Backend(u); err == nil {
			v, _ = b.(EvidenceVerifier)
		}
	}
	if v == nil {
		return &ExportError{File: path, Detail: "this rootkeeper cannot check " + u.Scheme + ": attestations"}
	}
	attested, err := v.VerifyEvidence(e.Evidence)
	if err != nil {
		if errors.Is(err, hsm.ErrUnsupported) {
			return &ExportError{File: path, Detail: "the attestation cannot be checked: " + err.Error() + " (" + hsm.HintOf(err) + ")"}
		}
		return &ExportError{File: path, Detail: "the attestation does not verify: " + err.Error()}
	}
	if id, err := keyIDOf(attested); err != nil || id != e.KeyID {
		return &ExportError{File: path, Detail: fmt.Sprintf("the attestation certifies key %s, not %s", short(id), short(e.KeyID))}
	}
	return nil
}

// exportedSigner is an exported key seen from the plan's machine: its
// public key and evidence, and no device. It never signs: an exported key
// signs on its officer's machine, through a signing bundle.
type exportedSigner struct {
	e   *ExportedKey
	pub crypto.PublicKey
}

func (x *exportedSigner) Public() crypto.PublicKey { return x.pub }

func (x *exportedSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, &ExportError{File: x.e.file, Detail: "an exported key signs only on its officer's machine, through a signing bundle (rootkeeper sign)"}
}

func (x *exportedSigner) Info() hsm.KeyInfo {
	alg, _ := hsm.AlgorithmOf(x.pub)
	return hsm.KeyInfo{URI: x.e.URI, Algorithm: alg, Public: x.pub, Evidence: x.e.Evidence}
}

// openExported is the *Key of a plan's key export: no device, the
// export's URI and evidence; Key.Export names the file.
func openExported(e *ExportedKey) (*Key, error) {
	pub, err := parsePublicPEM(e.PublicKey)
	if err != nil {
		return nil, &ExportError{File: e.file, Detail: "the public key cannot be read: " + err.Error()}
	}
	x := &exportedSigner{e: e, pub: pub}
	tuf, err := roles.NewSigner(x)
	if err != nil {
		return nil, &ExportError{File: e.file, Detail: err.Error()}
	}
	return &Key{URI: e.URI, HW: x, TUF: tuf, Evidence: e.Evidence, Export: e.file}, nil
}

// backendSource finds the backend of a URI scheme (*hsm.Keyring), to
// check evidence without a device.
type backendSource interface {
	Backend(uri *hsm.URI) (hsm.Backend, error)
}

// exportOfRecord is a key record (keys/KEYID.json) as an export, to check
// its evidence again without the device (apply of a bootstrap bundle).
func exportOfRecord(path string, rec *KeyRecord) (*ExportedKey, error) {
	e := &ExportedKey{Format: KeyExportFormat, KeyID: rec.KeyID, URI: rec.URI, Algorithm: rec.Algorithm, PublicKey: rec.PublicKey, Evidence: rec.Evidence, file: path}
	pub, err := parsePublicPEM(rec.PublicKey)
	if err != nil {
		return nil, &ExportError{File: path, Detail: "the public key cannot be read: " + err.Error()}
	}
	if id, err := keyIDOf(pub); err != nil || id != rec.KeyID {
		return nil, &ExportError{File: path, Detail: fmt.Sprintf("the public key has key id %s, not the %s it is filed under", short(id), short(rec.KeyID))}
	}
	return e, nil
}
