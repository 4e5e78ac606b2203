package roles

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
)

// AnchorField is the field of a role's signed object that names the
// ceremony transcript's head when the version was made. TUF clients ignore
// fields they do not know (go-tuf keeps them in UnrecognizedFields, tuf-js
// in unrecognizedFields), and both sign and verify them with the rest of
// signed: the signatures the ceremony makes anyway vouch for the chain.
const AnchorField = "x-rootkeeper-transcript"

// Anchor is the transcript head a metadata version was made on: the
// number of the last entry before the change and the SHA-256 of that
// entry's line ("sha256:HEX"); Seq 0 and Head "" for the first change of a
// repository, made on an empty transcript.
type Anchor struct {
	Seq  int    `json:"seq"`
	Head string `json:"head"`
}

// String is "seq N head sha256:…".
func (a *Anchor) String() string {
	if a == nil {
		return "no anchor"
	}
	if a.Seq == 0 {
		return "seq 0 (an empty transcript)"
	}
	return fmt.Sprintf("seq %d head %s", a.Seq, a.Head)
}

// stamp sets the repository's anchor on the signed fields of a version
// being made, or removes an anchor copied from the version before when the
// repository has none (a version never carries a head it was not made on).
func (r *Repo) stamp(fields *map[string]any) {
	if r.Anchor == nil {
		delete(*fields, AnchorField)
		return
	}
	if *fields == nil {
		*fields = map[string]any{}
	}
	(*fields)[AnchorField] = map[string]any{"seq": r.Anchor.Seq, "head": r.Anchor.Head}
}

// SignedInfo is what the transcript records and checks of one metadata
// file: its role, version, anchor, the digest of the payload its keys sign
// (the canonical JSON of signed) and the key ids that signed it.
type SignedInfo struct {
	Type    string
	Version int64
	Anchor  *Anchor // nil: the file carries none
	Payload string  // "sha256:HEX" of the canonical signed bytes
	KeyIDs  []string
}

// ReadSigned reads a metadata file's anchor, payload digest and signers
// without verifying anything: the anchor is only as good as the
// signatures, which roles.Verify checks.
func ReadSigned(data []byte) (*SignedInfo, error) {
	var md struct {
		Signed     map[string]any `json:"signed"`
		Signatures []struct {
			KeyID string `json:"keyid"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(data, &md); err != nil {
		return nil, fmt.Errorf("not TUF metadata: %v", err)
	}
	if md.Signed == nil {
		return nil, fmt.Errorf("not TUF metadata: no signed object")
	}
	info := &SignedInfo{}
	info.Type, _ = md.Signed["_type"].(string)
	if v, ok := md.Signed["version"].(float64); ok {
		info.Version = int64(v)
	}
	if raw, ok := md.Signed[AnchorField]; ok {
		a, err := parseAnchor(raw)
		if err != nil {
			return nil, err
		}
		info.Anchor = a
	}
	payload, err := canonical(data)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(payload)
	info.Payload = "sha256:" + hex.EncodeToString(sum[:])
	for _, s := range md.Signatures {
		info.KeyIDs = append(info.KeyIDs, s.KeyID)
	}
	return info, nil
}

// ReadAnchor reads only a metadata file's anchor (nil: none), without the
// payload digest ReadSigned computes.
func ReadAnchor(data []byte) (*Anchor, error) {
	var md struct {
		Signed *struct {
			Anchor json.RawMessage `json:"x-rootkeeper-transcript"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &md); err != nil {
		return nil, fmt.Errorf("not TUF metadata: %v", err)
	}
	if md.Signed == nil {
		return nil, fmt.Errorf("not TUF metadata: no signed object")
	}
	if md.Signed.Anchor == nil {
		return nil, nil
	}
	var raw any
	if err := json.Unmarshal(md.Signed.Anchor, &raw); err != nil {
		return nil, err
	}
	return parseAnchor(raw)
}

// canonical returns the canonical JSON of the file's signed object, as
// keys sign it (numbers kept exact).
func canonical(data []byte) ([]byte, error) {
	var md struct {
		Signed json.RawMessage `json:"signed"`
	}
	if err := json.Unmarshal(data, &md); err != nil {
		return nil, err
	}
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return nil, fmt.Errorf("signed cannot be encoded as canonical JSON: %v", err)
	}
	return payload, nil
}

func parseAnchor(raw any) (*Anchor, error) {
	m, ok := raw.(map[string]any)
	bad := fmt.Errorf("%s is not {\"seq\": N, \"head\": \"sha256:…\"}", AnchorField)
	if !ok || len(m) != 2 {
		return nil, bad
	}
	seq, ok1 := m["seq"].(float64)
	head, ok2 := m["head"].(string)
	if !ok1 || !ok2 || seq < 0 || seq != float64(int(seq)) {
		return nil, bad
	}
	a := &Anchor{Seq: int(seq), Head: head}
	if (a.Seq == 0) != (head == "") || (head != "" && !validHead(head)) {
		return nil, bad
	}
	return a, nil
}

func validHead(h string) bool {
	hx, ok := strings.CutPrefix(h, "sha256:")
	if !ok || len(hx) != 64 {
		return false
	}
	_, err := hex.DecodeString(hx)
	return err == nil
}
