package oci

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// CheckOptions say what check-image checks against.
type CheckOptions struct {
	Ref  string // the image reference to check
	Name string // the target name to look up; default REPOSITORY:TAG
	// Where the TUF client reads the metadata and what it trusts
	// (roles.LookupOptions: Dir or URL, TrustedRoot, StateDir, At).
	TUF      roles.LookupOptions
	Registry Options
}

// Verdict is check-image's answer.
type Verdict struct {
	Reference string    `json:"reference"`
	Target    string    `json:"target"`   // the target name looked up (and found, if Signed is set)
	State     string    `json:"state"`    // "verified", "mismatch" or "unsigned"
	Registry  *Manifest `json:"registry"` // what the registry serves
	Signed    *Signed   `json:"signed,omitempty"`
	Problem   string    `json:"problem,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// Signed is the target as the tagging key signed it.
type Signed struct {
	Length int64             `json:"length"`
	Hashes map[string]string `json:"hashes"`
	Custom json.RawMessage   `json:"custom,omitempty"`
}

// Verdict states.
const (
	Verified = "verified" // the registry serves exactly the signed manifest
	Mismatch = "mismatch" // the registry serves another manifest for the tag
	Unsigned = "unsigned" // no trusted role signs the target name
)

// ClientError is a TUF client's refusal of the repository's metadata
// (expired, badly signed, rolled back): the image cannot be checked.
type ClientError struct{ Err error }

func (e *ClientError) Error() string {
	return "the TUF client refuses the repository's metadata: " + e.Err.Error()
}

// Unwrap returns go-tuf's error.
func (e *ClientError) Unwrap() error { return e.Err }

// Hint says what to do.
func (e *ClientError) Hint() string {
	return "do not use the image; the repository's owners must fix the metadata (rootkeeper verify on the repository shows why)"
}

// Check resolves the reference in the registry, refreshes the TUF
// metadata as a client, finds the target and compares. Errors are
// registry or repository problems (*Error, *ClientError, I/O); a verdict
// is returned whenever both sides could be read.
func Check(ctx context.Context, opts CheckOptions) (*Verdict, error) {
	m, err := Resolve(ctx, opts.Ref, opts.Registry)
	if err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		if name = m.TargetName(); name == "" {
			return nil, &Error{Detail: opts.Ref + " names no tag", HintText: "give the target name to check it against with --name"}
		}
	}
	l, err := roles.NewLookup(opts.TUF)
	if err != nil {
		return nil, clientErr(err)
	}
	defer l.Close()
	v := &Verdict{Reference: opts.Ref, Target: name, Registry: m, CheckedAt: time.Now().UTC().Truncate(time.Second)} // JSON: whole seconds
	if !opts.TUF.At.IsZero() {
		v.CheckedAt = opts.TUF.At.UTC()
	}
	tf, err := findTarget(l, name, opts.Name == "", m)
	if errors.Is(err, roles.ErrTargetNotFound) {
		v.State, v.Problem = Unsigned, fmt.Sprintf("no trusted role signs %s", name)
		return v, nil
	}
	if err != nil {
		return nil, clientErr(err)
	}
	if tf.Path != name {
		v.Target = tf.Path
	}
	v.Signed = &Signed{Length: tf.Length, Hashes: map[string]string{}}
	for alg, h := range tf.Hashes {
		v.Signed.Hashes[alg] = h.String()
	}
	if tf.Custom != nil {
		v.Signed.Custom = json.RawMessage(*tf.Custom)
	}
	v.State, v.Problem = compare(m, tf)
	return v, nil
}

// findTarget looks REPOSITORY:TAG up and, for repositories imported from
// Notary (where a target is the bare tag, as in Docker Content Trust),
// the bare tag — accepted only when its signed custom metadata names this
// image's GUN.
func findTarget(l *roles.Lookup, name string, fallback bool, m *Manifest) (*metadata.TargetFiles, error) {
	tf, err := l.Target(name)
	if !errors.Is(err, roles.ErrTargetNotFound) || !fallback || m.Tag == "" {
		return tf, err
	}
	bare, err2 := l.Target(m.Tag)
	if err2 != nil {
		if errors.Is(err2, roles.ErrTargetNotFound) {
			return nil, err
		}
		return nil, err2
	}
	if gunOf(bare) != m.GUN() {
		return nil, err
	}
	return bare, nil
}

// gunOf reads custom.notary.gun of an imported target.
func gunOf(tf *metadata.TargetFiles) string {
	if tf.Custom == nil {
		return ""
	}
	var c struct {
		Notary struct {
			GUN string `json:"gun"`
		} `json:"notary"`
	}
	if json.Unmarshal(*tf.Custom, &c) != nil {
		return ""
	}
	return c.Notary.GUN
}

// compare checks the manifest against every hash the target lists that a
// client can compute, and the length.
func compare(m *Manifest, tf *metadata.TargetFiles) (string, string) {
	served := map[string][]byte{"sha256": m.SHA256, "sha512": m.SHA512}
	var diffs []string
	checked := 0
	for _, alg := range slices.Sorted(maps.Keys(tf.Hashes)) {
		got, known := served[alg]
		if !known {
			continue
		}
		checked++
		if !bytes.Equal(got, tf.Hashes[alg]) {
			diffs = append(diffs, fmt.Sprintf("%s %s, signed %s", alg, short(hex.EncodeToString(got)), short(tf.Hashes[alg].String())))
		}
	}
	if tf.Length != m.Length {
		diffs = append(diffs, fmt.Sprintf("length %d, signed %d", m.Length, tf.Length))
	}
	if checked == 0 {
		return Mismatch, "the signed target has no sha256 or sha512 hash to check the manifest with"
	}
	if len(diffs) > 0 {
		return Mismatch, fmt.Sprintf("the registry serves %s for %s (%s): not the manifest the tagging key signed", m.Digest, m.Reference, strings.Join(diffs, "; "))
	}
	return Verified, ""
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// clientErr keeps fetch failures as they are (the metadata could not be
// read) and wraps the client's refusals.
func clientErr(err error) error {
	var dl *metadata.ErrDownload
	var dh *metadata.ErrDownloadHTTP
	var ml *metadata.ErrDownloadLengthMismatch
	if errors.As(err, &dl) || errors.As(err, &dh) || errors.As(err, &ml) {
		return &Error{Detail: "cannot read the TUF metadata", Err: err, HintText: "check --repo or --url"}
	}
	if strings.Contains(err.Error(), "no trusted root") {
		return &Error{Detail: err.Error(), HintText: "pass --trusted-root FILE"}
	}
	return &ClientError{Err: err}
}
