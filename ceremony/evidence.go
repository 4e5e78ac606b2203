package ceremony

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// RuleEvidence is the roles.Problem rule of a key record whose hardware
// evidence does not hold.
const RuleEvidence = "key-evidence"

// EvidenceVerifier is implemented by backends that can check recorded
// evidence again without the device (hsm/yubikey: the attestation chain
// and what it states). It returns the attested public key.
type EvidenceVerifier interface {
	VerifyEvidence(ev *hsm.Evidence) (crypto.PublicKey, error)
}

// EvidenceCheck is the outcome for one key record.
type EvidenceCheck struct {
	KeyID    string        `json:"keyid"`
	URI      string        `json:"uri"`
	Evidence *hsm.Evidence `json:"evidence,omitempty"`
	// Result is "ok", "not re-checked: …" or the problem found.
	Result string `json:"result"`
}

// EvidenceReport is the re-check of every key record in a repository.
type EvidenceReport struct {
	Checks   []EvidenceCheck `json:"checks"`
	Problems []roles.Problem `json:"problems,omitempty"`
	Warnings []string        `json:"warnings,omitempty"`
}

// OK reports whether no problem was found.
func (r *EvidenceReport) OK() bool { return len(r.Problems) == 0 }

// CheckStoredEvidence re-checks the key records in dir/keys/*.json, as
// rootkeeper verify and status do: each record's public key has the key id
// it is filed under, the repository's metadata trusts that key, and its
// hardware evidence still holds. For a YubiKey key, the backend of the
// record's URI scheme (through keys, which opens no device for this)
// verifies the attestation chain again — against Yubico's roots, or
// against the explicit root recorded with it when keys' options carry that
// root again (--attestation-roots) — and the attested public key must have
// the record's key id.
//
// Evidence that cannot be re-checked (an explicit root not given again, a
// backend not built in) is a warning; evidence that fails is a problem.
func CheckStoredEvidence(dir string, keys *hsm.Keyring) (*EvidenceReport, error) {
	files, err := filepath.Glob(filepath.Join(dir, "keys", "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	rep := &EvidenceReport{}
	if len(files) == 0 {
		return rep, nil
	}
	trusted, trustErr := trustedKeyIDs(dir)
	if trustErr != nil {
		rep.Warnings = append(rep.Warnings, "cannot tell which keys the repository trusts: "+trustErr.Error())
	}
	for _, f := range files {
		name := "keys/" + filepath.Base(f)
		id := strings.TrimSuffix(filepath.Base(f), ".json")
		check := EvidenceCheck{KeyID: id}
		problem := func(detail, hint string) {
			check.Result = detail
			rep.Problems = append(rep.Problems, roles.Problem{Role: "key " + short(id), File: name, Rule: RuleEvidence, Detail: detail, Hint: hint})
		}
		restore := "restore " + name + " from the repository's history, or find out who changed it"
		data, err := os.ReadFile(f)
		var rec KeyRecord
		if err == nil {
			err = json.Unmarshal(data, &rec)
		}
		check.URI, check.Evidence = rec.URI, rec.Evidence
		switch {
		case err != nil:
			problem(fmt.Sprintf("%s cannot be read: %v", name, err), restore)
		case rec.KeyID != id:
			problem(fmt.Sprintf("%s records key id %s", name, short(rec.KeyID)), restore)
		default:
			checkRecord(&rec, name, keys, trusted, trustErr == nil, &check, problem, rep)
		}
		if check.Result == "" {
			check.Result = "ok"
		}
		rep.Checks = append(rep.Checks, check)
	}
	return rep, nil
}

// checkRecord checks one parsed record.
func checkRecord(rec *KeyRecord, name string, keys *hsm.Keyring, trusted map[string]bool, knowTrust bool,
	check *EvidenceCheck, problem func(detail, hint string), rep *EvidenceReport) {
	restore := "restore " + name + " from the repository's history, or find out who changed it"
	pub, err := parsePublicPEM(rec.PublicKey)
	if err != nil {
		problem(fmt.Sprintf("%s: the public key cannot be read: %v", name, err), restore)
		return
	}
	if id, err := keyIDOf(pub); err != nil || id != rec.KeyID {
		problem(fmt.Sprintf("%s: the recorded public key has key id %s, not %s", name, short(id), short(rec.KeyID)), restore)
		return
	}
	if knowTrust && !trusted[rec.KeyID] {
		problem(fmt.Sprintf("%s: key %s is not trusted by the repository's root or delegations", name, short(rec.KeyID)),
			"a key record for a key nobody trusts is stale or planted: remove it or restore the metadata")
		return
	}
	ev := rec.Evidence
	if ev == nil || ev.Kind != hsm.EvidencePIV {
		return // PKCS#11 attribute readings cannot be checked again without the token
	}
	notChecked := func(why string) {
		check.Result = "not re-checked: " + why
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("key %s (%s): attestation not re-checked: %s", short(rec.KeyID), rec.URI, why))
	}
	u, err := hsm.ParseURI(rec.URI)
	if err != nil {
		problem(fmt.Sprintf("%s: the key URI %q cannot be parsed", name, hsm.Redact(rec.URI)), restore)
		return
	}
	var v EvidenceVerifier
	if keys != nil {
		if b, err := keys.Backend(u); err == nil {
			v, _ = b.(EvidenceVerifier)
		}
	}
	if v == nil {
		notChecked("this rootkeeper has no backend that checks " + u.Scheme + ": evidence")
		return
	}
	attested, err := v.VerifyEvidence(ev)
	if errors.Is(err, hsm.ErrUnsupported) {
		why := err.Error()
		if h := hsm.HintOf(err); h != "" {
			why += " (" + h + ")"
		}
		notChecked(why)
		return
	}
	if err != nil {
		problem(fmt.Sprintf("%s: %v", name, err), hsm.HintOf(err))
		return
	}
	id, err := keyIDOf(attested)
	if err != nil || id != rec.KeyID {
		problem(fmt.Sprintf("%s: the attestation certifies key %s, not the recorded key %s", name, short(id), short(rec.KeyID)),
			"the evidence belongs to another key: "+restore)
	}
}

func parsePublicPEM(s string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM public key")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

func keyIDOf(pub crypto.PublicKey) (string, error) {
	k, err := roles.PublicKey(pub)
	if err != nil {
		return "", err
	}
	return roles.KeyID(k)
}

// trustedKeyIDs returns the ids of the keys the newest root and every
// reachable delegation trust (roles.Repo.KeyIDs).
func trustedKeyIDs(dir string) (map[string]bool, error) {
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, id := range repo.KeyIDs() {
		ids[id] = true
	}
	return ids, nil
}
