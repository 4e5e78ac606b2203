package ceremony

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// DigestInput is a target without a file: Docker Content Trust's image
// tags, whose length and hashes are those of the image manifest in the
// registry. The repository keeps no copy of the content; the target is
// marked external (roles.IsExternal) and clients check the content they
// fetch from the registry against it.
type DigestInput struct {
	Length int64
	Hashes map[string][]byte // "sha256", "sha512"
	Custom map[string]any    // custom metadata; the "rootkeeper" entry is rootkeeper's own
}

// addTargetInput records one input in role and returns the files it needs
// under targets/ (none for a digest-only target).
func addTargetInput(repo *roles.Repo, consistent bool, role string, in TargetInput) ([]File, error) {
	if in.Digest != nil {
		if in.Data != nil {
			return nil, fmt.Errorf("target %q: give its content or its digest, not both", in.Name)
		}
		d := in.Digest
		return nil, repo.AddExternalTarget(role, in.Name, d.Length, hexHashes(d.Hashes), d.Custom)
	}
	if err := repo.AddTarget(role, in.Name, in.Data); err != nil {
		return nil, err
	}
	md, err := targetsRole(repo, role)
	if err != nil {
		return nil, err
	}
	return targetFiles(consistent, in.Name, md.Signed.Targets[in.Name], in.Data), nil
}

// urlSafeName refuses target path characters that a client or a static web
// server would read as something else: '%' (servers decode %2F), '?' and
// '#' (query and fragment), and control characters.
func urlSafeName(name string) error {
	for _, r := range name {
		if r == '%' || r == '?' || r == '#' || unicode.IsControl(r) {
			return fmt.Errorf("target path %q contains %q: a web server or client would read it as something else", name, r)
		}
	}
	return nil
}

// DigestLine is one line of a digest list (targets add --from FILE): a
// JSON object per line; empty lines and lines starting with # are skipped.
//
//	{"name": "library/app:v1.2", "sha256": "<64 hex>", "length": 1234, "custom": {"note": "…"}}
type DigestLine struct {
	Name   string         `json:"name"`
	SHA256 string         `json:"sha256"`
	SHA512 string         `json:"sha512,omitempty"`
	Length *int64         `json:"length"`
	Custom map[string]any `json:"custom,omitempty"`
}

// Input checks the line and makes a target input of it.
func (l DigestLine) Input() (TargetInput, error) {
	if err := TargetName(l.Name); err != nil {
		return TargetInput{}, err
	}
	if l.Length == nil {
		return TargetInput{}, fmt.Errorf("%s: length is missing", l.Name)
	}
	hashes := map[string][]byte{}
	for alg, h := range map[string]string{"sha256": l.SHA256, "sha512": l.SHA512} {
		if h == "" {
			continue
		}
		b, err := hex.DecodeString(strings.TrimPrefix(h, alg+":"))
		if err != nil || (alg == "sha256" && len(b) != 32) || (alg == "sha512" && len(b) != 64) {
			return TargetInput{}, fmt.Errorf("%s: %s %q is not %d hex digits", l.Name, alg, h, map[string]int{"sha256": 64, "sha512": 128}[alg])
		}
		hashes[alg] = b
	}
	if len(hashes) == 0 {
		return TargetInput{}, fmt.Errorf("%s: sha256 is missing", l.Name)
	}
	if err := roles.CheckExternalHashes(*l.Length, hexHashes(hashes)); err != nil {
		return TargetInput{}, fmt.Errorf("%s: %w", l.Name, err)
	}
	if _, taken := l.Custom[roles.CustomKey]; taken {
		return TargetInput{}, fmt.Errorf("%s: custom must not have a %q entry: rootkeeper writes it", l.Name, roles.CustomKey)
	}
	return TargetInput{Name: l.Name, Digest: &DigestInput{Length: *l.Length, Hashes: hashes, Custom: l.Custom}}, nil
}

// ReadDigestList reads a digest list (DigestLine) from path ("-" for
// stdin). Unknown fields, a second object on a line and duplicate names
// are refused; every error names the line.
func ReadDigestList(path string) ([]TargetInput, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, &IOError{Op: "read", Path: path, Err: err}
		}
		defer f.Close()
		r = f
	}
	var out []TargetInput
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		in, err := parseDigestLine(line)
		if err == nil && seen[in.Name] > 0 {
			err = fmt.Errorf("%s is listed twice (also on line %d)", in.Name, seen[in.Name])
		}
		if err != nil {
			return nil, &RepoError{Detail: fmt.Sprintf("%s:%d: %v", path, n, err),
				HintText: `each line is one JSON object: {"name": "library/app:v1.2", "sha256": "<64 hex>", "length": 1234}`}
		}
		seen[in.Name] = n
		out = append(out, in)
	}
	if err := sc.Err(); err != nil {
		return nil, &IOError{Op: "read", Path: path, Err: err}
	}
	if len(out) == 0 {
		return nil, &RepoError{Detail: path + " lists no targets", HintText: "one JSON object per line"}
	}
	return out, nil
}

func parseDigestLine(line []byte) (TargetInput, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var l DigestLine
	if err := dec.Decode(&l); err != nil {
		return TargetInput{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return TargetInput{}, errors.New("more than one JSON value on the line")
	}
	return l.Input()
}

func hexHashes(h map[string][]byte) metadata.Hashes {
	out := metadata.Hashes{}
	for alg, b := range h {
		out[alg] = metadata.HexBytes(b)
	}
	return out
}
