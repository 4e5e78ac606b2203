// Package bundle is the signing bundle: one self-contained file that
// carries a planned change of a TUF repository to officers who sign it
// elsewhere — on an offline machine with nothing but rootkeeper, their
// device and the file — and back to the custodian who applies it.
//
// A bundle holds, for each role to sign, the canonical bytes a signature
// covers; the previous metadata they are checked against (the whole root
// chain, the published version of each role and of the roles that
// delegate to it), so that the summary is recomputed from the payload
// itself and every signature is checked with the bundle alone; the
// repository's identity (the SHA-256 of 1.root.json) and the state it was
// planned on (the SHA-256 of each metadata file read); the public keys and
// the devices that hold them; the signatures so far and a log of who made
// them; and its own expiry. docs/bundle-format.md is the reference.
//
// The package reads, checks and writes bundles; it opens no device and
// touches no repository (package ceremony does both).
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// Format is the bundle format version this rootkeeper reads and writes.
const Format = 1

// MaxSize bounds what is read of a bundle file.
const MaxSize = 64 << 20

// Bundle is a signing bundle as it is stored (JSON).
type Bundle struct {
	Format     int            `json:"rootkeeper_bundle"`
	ID         string         `json:"id"`
	Repository Repository     `json:"repository"`
	Operation  string         `json:"operation"`
	Inputs     map[string]any `json:"inputs,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	Expires    time.Time      `json:"expires"`
	// PlannedOn is the SHA-256 (hex) of each metadata file the change was
	// planned on, by path relative to the repository.
	PlannedOn map[string]string `json:"planned_on"`
	// Previous is the published metadata the new versions are checked
	// against: every root version, and the published version of each
	// targets role in Roles and of each role that delegates to one.
	Previous []File `json:"previous"`
	// Roles are the new versions to sign, in signing order.
	Roles []Role `json:"roles"`
	// Keys describes every key the thresholds name, by key id.
	Keys map[string]*Key `json:"keys"`
	// Log records the bundle's making and every signature added.
	Log []LogEntry `json:"log"`
	// Custodian is what the repository writes with the change at apply
	// besides the signed roles. Officers need none of it; apply checks it
	// against the hash the repository's transcript recorded.
	Custodian *Custodian `json:"custodian,omitempty"`
}

// Custodian is the rest of a change: files written with it (key records,
// target files), files removed, the new rootkeeper.yaml, the roles that
// get a new version (snapshot and timestamp are made at apply) and what
// the transcript records.
type Custodian struct {
	Changed []string       `json:"changed"`
	Files   []File         `json:"files,omitempty"`
	Remove  []string       `json:"remove,omitempty"`
	Policy  []byte         `json:"policy,omitempty"` // absent: rootkeeper.yaml unchanged
	Details map[string]any `json:"details,omitempty"`
}

// Digest is the SHA-256 of the custodian part, as the transcript records
// it: of its JSON as it reads back from the bundle file (decoded and
// encoded again, so that every object's members are in the same order
// whether Details held structs, as when the bundle is made, or the
// generic objects a bundle read from its file holds).
func (c *Custodian) Digest() string {
	if c == nil {
		return ""
	}
	data, _ := json.Marshal(c)
	var v any
	if json.Unmarshal(data, &v) == nil {
		data, _ = json.Marshal(v)
	}
	return sha256hex(data)
}

// LegacyDigest is Digest as rootkeeper computed it before it was decoded
// and encoded again: what the transcripts of bundles made then recorded
// (it equals Digest whenever Details holds no struct).
func (c *Custodian) LegacyDigest() string {
	if c == nil {
		return ""
	}
	data, _ := json.Marshal(c)
	return sha256hex(data)
}

// Repository is the repository a bundle was made for.
type Repository struct {
	Name string `json:"name,omitempty"`
	// FirstRoot is the SHA-256 (hex) of metadata/1.root.json: the
	// repository's identity, which no later change alters. In a bootstrap
	// bundle it is the SHA-256 of the payload of the root v1 it carries
	// (the file's bytes depend on the signatures still to come).
	FirstRoot string `json:"first_root_sha256"`
	// Bootstrap marks a bundle that makes a new repository (init --out):
	// it carries no previous metadata, and its root v1 must be signed by
	// its own threshold.
	Bootstrap bool `json:"bootstrap,omitempty"`
}

// File is a published metadata file.
type File struct {
	Role string `json:"role"`
	Path string `json:"path"`
	Data []byte `json:"data"`
}

// Role is one role's new version.
type Role struct {
	Role    string `json:"role"`
	Version int64  `json:"version"`
	// Path is where the signed metadata is written at apply.
	Path string `json:"path"`
	// Payload is the canonical JSON of the role's "signed" object: the
	// bytes every signature covers.
	Payload       []byte `json:"payload"`
	PayloadSHA256 string `json:"payload_sha256"`
	// Thresholds are what the signatures must meet, as the payload and the
	// previous metadata say (recomputed and compared on every read).
	Thresholds []Threshold `json:"thresholds"`
	Signatures []Signature `json:"signatures"`
}

// Threshold is one rule a role's signatures must meet.
type Threshold struct {
	Of        string   `json:"of"` // "root v4", "targets v7"
	Threshold int      `json:"threshold"`
	KeyIDs    []string `json:"keyids"`
}

// Signature is a TUF signature: key id and hex signature.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Key is a key the thresholds name: its TUF key and where it lives.
type Key struct {
	Key       *metadata.Key `json:"key"`
	Algorithm string        `json:"algorithm,omitempty"`
	// URI names the key's object, without any query (no PIN source).
	URI string `json:"uri,omitempty"`
	// Device is the device holding the key as it reported itself
	// ("SoftHSM project SoftHSM v2 serial 1a2b…", "YubiKey serial 1234").
	Device   string        `json:"device,omitempty"`
	Evidence *hsm.Evidence `json:"evidence,omitempty"`
}

// Log events.
const (
	EventMade   = "made"
	EventSigned = "signed"
)

// LogEntry is one event of the bundle's life.
type LogEntry struct {
	Time     time.Time `json:"time"`
	Event    string    `json:"event"`
	KeyID    string    `json:"keyid,omitempty"`
	Roles    []string  `json:"roles,omitempty"`
	Device   string    `json:"device,omitempty"`
	Operator string    `json:"operator,omitempty"`
	Host     string    `json:"host,omitempty"`
	Version  string    `json:"rootkeeper_version,omitempty"`
}

// Error is a bundle that cannot be used.
type Error struct {
	File     string
	Detail   string
	HintText string
}

func (e *Error) Error() string {
	if e.File == "" {
		return "signing bundle: " + e.Detail
	}
	return fmt.Sprintf("signing bundle %s: %s", e.File, e.Detail)
}

// Hint says what to do.
func (e *Error) Hint() string { return e.HintText }

const hintAskCustodian = "ask the custodian for a fresh copy of the bundle (rootkeeper show FILE says what it holds)"

// Read reads and parses a bundle file strictly.
func Read(path string) (*Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Detail: err.Error(), HintText: "give the path of the bundle file"}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, &Error{File: path, Detail: err.Error()}
	}
	if len(data) > MaxSize {
		return nil, &Error{File: path, Detail: fmt.Sprintf("larger than %d MiB: not a signing bundle", MaxSize>>20)}
	}
	return Parse(path, data)
}

// Parse parses bundle bytes: a format version other than Format, an
// unknown field or trailing data is one clear error; name is the file.
func Parse(name string, data []byte) (*Bundle, error) {
	var head struct {
		Format *int `json:"rootkeeper_bundle"`
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&head); err != nil || head.Format == nil {
		return nil, &Error{File: name, Detail: "not a rootkeeper signing bundle (no \"rootkeeper_bundle\" format version)",
			HintText: "a bundle is the file rootkeeper writes with --out"}
	}
	if *head.Format != Format {
		return nil, &Error{File: name, Detail: fmt.Sprintf("bundle format version %d; this rootkeeper reads version %d", *head.Format, Format),
			HintText: "use the rootkeeper release the custodian used to make the bundle"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Bundle
	if err := dec.Decode(&b); err != nil {
		return nil, &Error{File: name, Detail: "does not parse: " + err.Error(), HintText: hintAskCustodian}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &Error{File: name, Detail: "has data after the bundle", HintText: hintAskCustodian}
	}
	if err := b.wellFormed(); err != nil {
		return nil, &Error{File: name, Detail: err.Error(), HintText: hintAskCustodian}
	}
	return &b, nil
}

// wellFormed checks what the JSON decoder cannot: required fields.
func (b *Bundle) wellFormed() error {
	switch {
	case b.ID == "":
		return errors.New("no id")
	case len(b.Repository.FirstRoot) != 64:
		return errors.New("no repository identity (repository.first_root_sha256)")
	case b.Operation == "":
		return errors.New("no operation")
	case b.Expires.IsZero() || b.CreatedAt.IsZero():
		return errors.New("no created_at or expires time")
	case len(b.Roles) == 0:
		return errors.New("no roles to sign")
	}
	for i, r := range b.Roles {
		if r.Role == "" || len(r.Payload) == 0 {
			return fmt.Errorf("roles[%d]: no role name or payload", i)
		}
	}
	return nil
}

// Marshal returns the bundle's bytes.
func (b *Bundle) Marshal() ([]byte, error) {
	if b.Log == nil {
		b.Log = []LogEntry{}
	}
	for i := range b.Roles {
		if b.Roles[i].Signatures == nil {
			b.Roles[i].Signatures = []Signature{}
		}
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Expired reports an expired bundle as an error.
func (b *Bundle) Expired(name string, now time.Time) error {
	if now.Before(b.Expires) {
		return nil
	}
	return &Error{File: name, Detail: fmt.Sprintf("expired at %s (%s ago): its signatures are no longer collected or applied",
		b.Expires.UTC().Format(time.RFC3339), now.Sub(b.Expires).Truncate(time.Second)),
		HintText: "the custodian makes a new bundle of the change (--out) and sends it round again"}
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
