package ceremony

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"

	"github.com/rootkeeper/rootkeeper/roles"
)

// TranscriptSchema is the entry format this version writes: 2 adds the
// repository's identity, the anchor, every signed payload with its
// signatures, and the removals (docs/transcript.md). Entries without a
// schema were written before and verify as unanchored legacy entries.
const TranscriptSchema = 2

// SignedRecord is one metadata file a change wrote: the role and version,
// the digest of the canonical signed bytes its keys signed, and every
// signature on it, as the final file carries them.
type SignedRecord struct {
	Path       string            `json:"path"`
	Role       string            `json:"role"`
	Version    int64             `json:"version"`
	Payload    string            `json:"payload"` // "sha256:HEX" of the canonical JSON of signed
	Signatures []SignatureRecord `json:"signatures"`
}

// SignatureRecord is one signature on a metadata file and the device
// behind its key, from the key's record keys/KEYID.json.
type SignatureRecord struct {
	KeyID string `json:"keyid"`
	// Device is the kind of evidence the key record holds
	// (pkcs11-attributes, piv-attestation); "" when the repository has no
	// record of the key (a key of another tool, kept by a rotation).
	Device string `json:"device,omitempty"`
	// Serial is the token's serial (PKCS#11) or the YubiKey's.
	Serial string `json:"serial,omitempty"`
	// Evidence is "sha256:HEX" of the canonical JSON of the record's
	// evidence: audit compares it with the record as it is now.
	Evidence string `json:"evidence_digest,omitempty"`
	// Via says how the signature reached the ceremony when it was not
	// made on a device plugged into this machine: "bundle:sha256:HEX" for
	// a signing bundle. Empty: made here.
	Via string `json:"via,omitempty"`
}

// lastLineHash is the SHA-256 of a transcript's last line, "" for none.
func lastLineHash(data []byte) string {
	data = bytes.TrimSuffix(data, []byte("\n"))
	if len(data) == 0 {
		return ""
	}
	return sha256hex(data[bytes.LastIndexByte(data, '\n')+1:])
}

// headAnchor is the anchor of a change made on a transcript of n entries
// whose last line hashes to prev.
func headAnchor(n int, prev string) *roles.Anchor {
	if n == 0 {
		return &roles.Anchor{}
	}
	return &roles.Anchor{Seq: n, Head: "sha256:" + prev}
}

// recordSigned completes a new entry from the files the change writes:
// the repository's identity, and for each metadata file its payload and
// signatures, taken from the final bytes (not from the signing loop). A
// metadata file without the entry's anchor is refused: every version
// rootkeeper makes carries it (roles.Repo.Anchor).
func recordSigned(dir string, e *Entry, written []File, opts ...entryOption) error {
	var in entryInputs
	for _, o := range opts {
		o(&in)
	}
	byPath := map[string][]byte{}
	for _, f := range written {
		if !f.Remove {
			byPath[f.Path] = f.Data
		}
	}
	root1, ok := byPath["metadata/1.root.json"]
	if !ok {
		root1, _ = os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	}
	if len(root1) > 0 { // every repository has one; the chain tests write none
		e.Repository = "sha256:" + sha256hex(root1)
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		if strings.HasPrefix(p, "metadata/") {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	keys := keyLookup{dir: dir, written: byPath, cache: map[string]SignatureRecord{}}
	for _, p := range paths {
		info, err := roles.ReadSigned(byPath[p])
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		role := roleOfPath(p, info.Type)
		fromBundle := in.bundle != nil && in.bundle.roles[role] && info.Anchor != nil && *info.Anchor == in.bundle.planned
		if !fromBundle && (info.Anchor == nil || *info.Anchor != *e.Anchor) {
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("%s carries %s, not the transcript head it was made on (%s): a version without its anchor is never written; nothing was written", p, info.Anchor, e.Anchor),
				HintText: "this is a bug in rootkeeper: report it with the command you ran"}
		}
		rec := SignedRecord{Path: p, Role: role, Version: info.Version, Payload: info.Payload, Signatures: []SignatureRecord{}}
		for _, id := range info.KeyIDs {
			sig := keys.record(id)
			sig.Via = in.via[p+" "+id]
			if fromBundle {
				sig.Via = "bundle:" + in.bundle.id
			}
			rec.Signatures = append(rec.Signatures, sig)
		}
		e.Signed = append(e.Signed, rec)
	}
	return nil
}

// entryInputs is what a change tells the transcript besides its files.
type entryInputs struct {
	via    map[string]string // "PATH KEYID" → how that signature came (SignatureRecord.Via)
	bundle *appliedBundle    // the signing bundle the change applies: its roles carry the anchor it was made on
}

// entryOptions are what the change tells its transcript entry besides
// its files: the bundle it applies (its roles were signed on the head
// before the bundle's own entry, and their signatures came through it).
func (c *Change) entryOptions() []entryOption {
	if c.bundle == nil {
		return nil
	}
	ab := c.bundle
	return []entryOption{func(in *entryInputs) { in.bundle = ab }}
}

// entryOption adds an input to appendTranscript.
type entryOption func(*entryInputs)

// signedVia records, for signatures that did not come from a device on
// this machine, how they came: via["metadata/3.root.json KEYID"] =
// "bundle:sha256:…" (signing bundles). Signatures not named are "made here".
func signedVia(via map[string]string) entryOption {
	return func(in *entryInputs) { in.via = via }
}

// roleOfPath is the role a metadata file is of: its name without the
// version and .json ("metadata/3.releases.json" → releases).
func roleOfPath(p, typ string) string {
	name := strings.TrimSuffix(strings.TrimPrefix(p, "metadata/"), ".json")
	if i := strings.IndexByte(name, '.'); i > 0 {
		if _, err := strconv.ParseUint(name[:i], 10, 64); err == nil {
			name = name[i+1:]
		}
	}
	if name == "" {
		return typ
	}
	return name
}

// keyLookup finds the record of each key id: in the change's own files
// (a new key), then keys/, then keys/retired/.
type keyLookup struct {
	dir     string
	written map[string][]byte
	cache   map[string]SignatureRecord
}

func (k *keyLookup) record(id string) SignatureRecord {
	if r, ok := k.cache[id]; ok {
		return r
	}
	r := SignatureRecord{KeyID: id}
	for _, p := range []string{"keys/" + id + ".json", "keys/retired/" + id + ".json"} {
		data, ok := k.written[p]
		if !ok {
			var err error
			if data, err = os.ReadFile(filepath.Join(k.dir, filepath.FromSlash(p))); err != nil {
				continue
			}
		}
		if dev, ok := recordDevice(data); ok {
			dev.KeyID = id
			r = dev
			break
		}
	}
	k.cache[id] = r
	return r
}

// recordDevice reads the device kind, serial and evidence digest of a key
// record file.
func recordDevice(data []byte) (SignatureRecord, bool) {
	var rec struct {
		Evidence json.RawMessage `json:"evidence"`
	}
	if json.Unmarshal(data, &rec) != nil || len(rec.Evidence) == 0 || string(rec.Evidence) == "null" {
		return SignatureRecord{}, false
	}
	var ev struct {
		Kind        string `json:"kind"`
		TokenSerial string `json:"token_serial"`
		Serial      uint32 `json:"serial"`
	}
	if json.Unmarshal(rec.Evidence, &ev) != nil {
		return SignatureRecord{}, false
	}
	out := SignatureRecord{Device: ev.Kind, Serial: ev.TokenSerial, Evidence: EvidenceDigest(rec.Evidence)}
	if ev.Serial != 0 {
		out.Serial = strconv.FormatUint(uint64(ev.Serial), 10)
	}
	return out, true
}

// EvidenceDigest is "sha256:HEX" of the canonical JSON of a key record's
// evidence object, as the transcript records it.
func EvidenceDigest(raw json.RawMessage) string {
	c, err := cjson.EncodeCanonical(raw)
	if err != nil {
		c = raw
	}
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:])
}
