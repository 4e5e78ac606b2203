package roles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Clients check signatures over the canonical JSON of the signed part as
// they re-encode it: go-tuf from its Go types (fields it does not know kept
// as they are, fields it knows always written in its own way), tuf-js from
// its JavaScript objects (every field kept, numbers as JavaScript numbers,
// a timestamp's meta reduced to snapshot.json). checkEncoding makes sure
// both re-encode exactly what the file holds, so that one signature is
// valid for both:
//
//   - every integer lies in [-(2^53-1), 2^53-1] and no number has a
//     fraction or an exponent (tuf-js rounds larger integers);
//   - go-tuf's encoding of the parsed file equals the file's own signed
//     part (no field go-tuf drops, adds or changes: a missing
//     consistent_snapshot or terminating, a zero length, …);
//   - a timestamp's meta lists snapshot.json only;
//   - expires is in the TUF form YYYY-MM-DDTHH:MM:SSZ (tuf-js reads
//     fractions of seconds to the millisecond only, python-tuf refuses any
//     other form).

var expiresRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$`)

// checkEncoding checks the raw file against what go-tuf made of its
// signed part (signed).
func (v *verifier) checkEncoding(role, file, label string, signed any) {
	raw := v.rawOf(file)
	if raw == nil {
		return
	}
	// One decoding of the whole file (go-tuf parsed it, so it is one
	// JSON object); its "signed" member is what is compared.
	whole, err := decodeNumbers(raw)
	if err != nil {
		return // go-tuf parsed it: cannot happen
	}
	top, _ := whole.(map[string]any)
	fileVal, ok := top["signed"]
	if !ok {
		return
	}
	if p, detail := checkNumbers("signed", fileVal); p != "" {
		v.add(role, file, RuleNumber, fmt.Sprintf("%s: %s %s", label, p, detail),
			"rootkeeper never writes such a number: a version this large (or a number of this form) was written by another tool; tuf-js clients have never accepted this file")
		return
	}
	obj, _ := fileVal.(map[string]any)
	if exp, ok := obj["expires"].(string); ok && !expiresRE.MatchString(exp) {
		v.add(role, file, RuleEncoding, fmt.Sprintf("%s: expires %q is not in the TUF form YYYY-MM-DDTHH:MM:SSZ", label, exp),
			"tuf-js reads fractions of a second to the millisecond only and python-tuf refuses the file: write the expiry in UTC, in whole seconds")
	}
	if meta, ok := obj["meta"].(map[string]any); ok && role == metadata.TIMESTAMP && len(meta) != 1 {
		v.add(role, file, RuleEncoding, fmt.Sprintf("%s: meta lists %d files (%s): tuf-js keeps only snapshot.json, so its signature check fails", label, len(meta), strings.Join(slices.Sorted(maps.Keys(meta)), ", ")),
			"a timestamp names the snapshot only")
	}
	// What go-tuf signs is the canonical form of this (cjson encodes
	// json.Marshal's output); canonical JSON itself is not always JSON
	// (raw newlines in PEM keys), so the two are compared decoded.
	enc, err := json.Marshal(signed)
	if err != nil {
		return // reported by the signature checks
	}
	gotuf, err := decodeNumbers(enc)
	if err != nil {
		return
	}
	if p, detail := firstDiff("signed", fileVal, gotuf); p != "" {
		v.add(role, file, RuleEncoding, fmt.Sprintf("%s: %s %s: go-tuf and tuf-js check the signatures over different bytes, so one of them refuses the file", label, p, detail),
			"write the metadata with go-tuf's encoding (rootkeeper does) and sign it again")
	}
}

// rawOf returns the bytes of a scanned file, or of the trusted root.
func (v *verifier) rawOf(file string) []byte {
	if file == v.tfile && v.opts.TrustedRoot != nil {
		return v.trusted
	}
	if data, ok := v.s.raw[file]; ok {
		return data
	}
	if file == v.tfile {
		return v.trusted
	}
	return nil
}

func decodeNumbers(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var val any
	if err := dec.Decode(&val); err != nil {
		return nil, err
	}
	return val, nil
}

var maxSafe = big.NewInt(MaxSafeInteger)

// checkNumbers returns the path of the first number tuf-js cannot read
// exactly and what is wrong with it.
func checkNumbers(path string, val any) (string, string) {
	switch x := val.(type) {
	case json.Number:
		s := x.String()
		if strings.ContainsAny(s, ".eE") {
			return path, fmt.Sprintf("is %s, not an integer (canonical JSON has integers only)", s)
		}
		n, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return path, fmt.Sprintf("is %s, not an integer", s)
		}
		if new(big.Int).Abs(n).Cmp(maxSafe) > 0 {
			return path, fmt.Sprintf("is %s: integers from 2^53 (9007199254740992) on are beyond what tuf-js (JavaScript) reads exactly: it rounds them and its signature check fails", s)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if p, d := checkNumbers(path+key(k), x[k]); p != "" {
				return p, d
			}
		}
	case []any:
		for i, e := range x {
			if p, d := checkNumbers(fmt.Sprintf("%s[%d]", path, i), e); p != "" {
				return p, d
			}
		}
	}
	return "", ""
}

// key is the path element for an object key: .name or ["a.json"].
func key(k string) string {
	for _, c := range k {
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return "[" + strconv.Quote(k) + "]"
		}
	}
	return "." + k
}

// firstDiff returns the path of the first place where the file's value a
// and go-tuf's value b differ, and how.
func firstDiff(path string, a, b any) (string, string) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return path, "is an object, go-tuf writes " + brief(b)
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if _, ok := y[k]; !ok {
				return path + key(k), "is in the file, go-tuf drops it"
			}
		}
		for _, k := range slices.Sorted(maps.Keys(y)) {
			if _, ok := x[k]; !ok {
				return path + key(k), "is not in the file, go-tuf adds " + brief(y[k])
			}
			if p, d := firstDiff(path+key(k), x[k], y[k]); p != "" {
				return p, d
			}
		}
	case []any:
		y, ok := b.([]any)
		if !ok {
			return path, "is a list, go-tuf writes " + brief(b)
		}
		if len(x) != len(y) {
			return path, fmt.Sprintf("has %d entries, go-tuf writes %d", len(x), len(y))
		}
		for i := range x {
			if p, d := firstDiff(fmt.Sprintf("%s[%d]", path, i), x[i], y[i]); p != "" {
				return p, d
			}
		}
	default:
		if a != b {
			return path, fmt.Sprintf("is %s in the file, go-tuf writes %s", brief(a), brief(b))
		}
	}
	return "", ""
}

// brief shows a JSON value in at most 40 characters.
func brief(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 40 {
		return string(b[:37]) + "…"
	}
	return string(b)
}
