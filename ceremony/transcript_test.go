package ceremony

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/roles"
)

// longLife runs a repository through bootstrap, targets, delegations,
// rotations of root and timestamp, a revocation and re-signing on
// SoftHSM, checking after every change that the transcript verifies and
// that every metadata file the change wrote carries the anchor of the
// head it was made on.
func longLife(t *testing.T) *rotFixture {
	t.Helper()
	f := newRotFixture(t)
	ctx := context.Background()
	steps := []struct {
		name string
		run  func() error
	}{
		{"targets add", func() error {
			_, err := f.s.AddTargets(ctx, f.dir, "releases", []TargetInput{{Name: "releases/app-1.0", Data: []byte("app 1.0")}})
			return err
		}},
		{"delegate add", func() error {
			_, err := f.s.DelegateAdd(ctx, f.dir, DelegateOptions{Role: "docs", Keys: []string{f.env.URI("tagging", "spare")}, Paths: []string{"docs/*"}})
			return err
		}},
		{"rotate root", func() error {
			var add, remove []string
			for _, tok := range []string{"root-a", "root-b", "root-c"} {
				add, remove = append(add, f.env.URI(tok, "new")), append(remove, f.env.URI(tok, "root"))
			}
			_, err := f.s.Rotate(ctx, f.dir, RotateOptions{Role: RoleRoot, Add: add, Remove: remove})
			return err
		}},
		{"rotate timestamp", func() error {
			_, err := f.s.Rotate(ctx, f.dir, RotateOptions{Role: RoleTimestamp, Remove: []string{f.keyID(t, "online", "timestamp")}, Add: []string{f.env.URI("online", "timestamp-2")}})
			return err
		}},
		{"revoke", func() error {
			_, err := f.s.Revoke(ctx, f.dir, RevokeOptions{Key: f.env.URI("tagging", "releases"), Reason: "laptop stolen",
				Add: map[string][]string{"releases": {f.env.URI("tagging", "spare")}}})
			return err
		}},
		{"resign", func() error {
			_, err := f.s.Resign(ctx, f.dir, ResignOptions{Roles: []string{RoleRoot, RoleTargets, "docs"}})
			return err
		}},
		{"publish", func() error { _, err := f.s.Publish(ctx, f.dir); return err }},
	}
	for _, st := range steps {
		before := readTranscriptFile(t, f.dir)
		if err := st.run(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		checkAnchored(t, f.dir, before)
		rep, err := VerifyTranscript(f.dir)
		if err != nil || !rep.OK {
			t.Fatalf("after %s: %v %+v", st.name, err, rep)
		}
		if n := rep.Entries; rep.AnchoredThrough != n-1 || len(rep.Unanchored) != 1 || rep.Unanchored[0] != n || rep.Legacy != 0 {
			t.Fatalf("after %s: anchored through %d, unanchored %v of %d entries", st.name, rep.AnchoredThrough, rep.Unanchored, n)
		}
	}
	return f
}

func readTranscriptFile(t *testing.T, dir string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, TranscriptFile))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkAnchored checks the last entry: it continues before, and every
// metadata file it wrote carries the anchor of before's head and is
// recorded with its payload and signatures, each with its device.
func checkAnchored(t *testing.T, dir string, before []byte) {
	t.Helper()
	data := readTranscriptFile(t, dir)
	entries, err := ParseTranscript(data)
	if err != nil {
		t.Fatal(err)
	}
	e := entries[len(entries)-1]
	want := headAnchor(bytes.Count(before, []byte("\n")), lastLineHash(before))
	if e.Schema != TranscriptSchema || e.Anchor == nil || *e.Anchor != *want || !strings.HasPrefix(e.Repository, "sha256:") {
		t.Fatalf("entry %d: schema %d anchor %v (want %v) repository %q", e.Seq, e.Schema, e.Anchor, want, e.Repository)
	}
	signed := map[string]SignedRecord{}
	for _, s := range e.Signed {
		signed[s.Path] = s
	}
	n := 0
	for p := range e.Files {
		if !strings.HasPrefix(p, "metadata/") {
			continue
		}
		n++
		md, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		info, err := roles.ReadSigned(md)
		if err != nil || info.Anchor == nil || *info.Anchor != *want {
			t.Fatalf("entry %d (%s): %s carries %v, want %v (%v)", e.Seq, e.Operation, p, info.Anchor, want, err)
		}
		rec, ok := signed[p]
		if !ok || rec.Payload != info.Payload || len(rec.Signatures) != len(info.KeyIDs) || len(rec.Signatures) == 0 {
			t.Fatalf("entry %d: %s recorded as %+v, file has %+v", e.Seq, p, rec, info)
		}
		for _, s := range rec.Signatures {
			if s.Device != "pkcs11-attributes" || s.Serial == "" || !strings.HasPrefix(s.Evidence, "sha256:") {
				t.Fatalf("entry %d: %s: signature %+v", e.Seq, p, s)
			}
		}
	}
	if n == 0 {
		t.Fatalf("entry %d (%s) wrote no metadata", e.Seq, e.Operation)
	}
}

func TestTranscriptLongLife(t *testing.T) {
	f := longLife(t)
	entries, err := ParseTranscript(readTranscriptFile(t, f.dir))
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range entries {
		ops = append(ops, e.Operation)
	}
	if got := strings.Join(ops, " "); got != "init targets-add delegate-add rotate rotate revoke resign publish" {
		t.Fatalf("operations %q", got)
	}
	if rev := entries[5]; rev.Details["reason"] != "laptop stolen" || len(rev.Removed) == 0 {
		t.Errorf("revoke entry: reason %v, removed %v", rev.Details["reason"], rev.Removed)
	}
	// The root rotation was signed by the old and the new root keys.
	for _, s := range entries[3].Signed {
		if s.Path == "metadata/2.root.json" && len(s.Signatures) != 6 {
			t.Errorf("2.root.json: %d signatures recorded, want 3 old + 3 new", len(s.Signatures))
		}
	}
}

// tamper is one way to change a repository that transcript verify must
// notice, and the start of the problem it must name.
type tamper struct {
	name, want string
	do         func(t *testing.T, dir string, lines []string)
}

func writeLines(t *testing.T, dir string, lines []string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, TranscriptFile), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rechain rewrites lines with numbers and prev hashes that chain again,
// as someone who rebuilds the whole file would.
func rechain(t *testing.T, lines []string) []string {
	t.Helper()
	out := make([]string, len(lines))
	prev := ""
	for i, l := range lines {
		var m map[string]any
		if err := jsonUnmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		if seq, _ := m["seq"].(float64); int(seq) == i+1 && m["prev"] == prev {
			out[i], prev = l, sha256hex([]byte(l)) // still in place: kept as it is
			continue
		}
		m["seq"], m["prev"] = i+1, prev
		b, err := marshalLine(m)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
		prev = sha256hex([]byte(b))
	}
	return out
}

func TestTranscriptTampering(t *testing.T) {
	f := longLife(t)
	ctx := context.Background()
	for _, tc := range []tamper{
		{"edited entry", "entry 4 does not continue entry 3: entry 3 was changed", func(t *testing.T, dir string, l []string) {
			l[2] = strings.Replace(l[2], `"operation":"delegate-add"`, `"operation":"delegate-adx"`, 1)
			writeLines(t, dir, l)
		}},
		{"removed middle entry", "entry 3 is missing (line 3 is entry 4): an entry was removed", func(t *testing.T, dir string, l []string) {
			writeLines(t, dir, append(l[:2:2], l[3:]...))
		}},
		{"removed last entry", "was signed on entry 7, the last one, so entry 8 wrote it, but there is no entry 8: the last entry was removed", func(t *testing.T, dir string, l []string) {
			writeLines(t, dir, l[:len(l)-1])
		}},
		{"swapped entries", "entries 3 and 4 are swapped", func(t *testing.T, dir string, l []string) {
			l[2], l[3] = l[3], l[2]
			writeLines(t, dir, l)
		}},
		{"rebuilt with a fake entry", "metadata/2.releases.json was signed on entry 1, so entry 2 wrote it, but the transcript says entry 3 did: entries were moved or inserted", func(t *testing.T, dir string, l []string) {
			fake := strings.Replace(l[1], `"operation":"targets-add"`, `"operation":"publish"`, 1)
			writeLines(t, dir, rechain(t, append(append(l[:2:2], fake), l[2:]...)))
		}},
		{"rebuilt with an edited entry", "was signed on transcript entry 2 with head", func(t *testing.T, dir string, l []string) {
			l[1] = strings.Replace(l[1], `"operator":"`, `"operator":"mallory-`, 1)
			writeLines(t, dir, rechain(t, l))
		}},
		{"metadata replaced by another validly signed file", "metadata/timestamp.json is not the one the last entry to write it (entry 9) recorded (sha256 ", func(t *testing.T, dir string, l []string) {
			// The timestamp of entry 7, validly signed, put back: a rollback.
			ts, err := os.ReadFile(filepath.Join(dir, "metadata", "timestamp.json"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.s.Publish(ctx, dir); err != nil { // entry 9 in dir
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "metadata", "timestamp.json"), ts, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"copied from another repository", "entry 1 belongs to another repository", func(t *testing.T, dir string, _ []string) {
			f.s.Close() // the module rereads SOFTHSM2_CONF for the other tokens
			other := newRotFixture(t)
			other.s.Close()
			data := readTranscriptFile(t, other.dir)
			if err := os.WriteFile(filepath.Join(dir, TranscriptFile), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "repo")
			copyTree(t, f.dir, dir)
			lines := strings.Split(strings.TrimSuffix(string(readTranscriptFile(t, dir)), "\n"), "\n")
			tc.do(t, dir, lines)
			rep, err := VerifyTranscript(dir)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || !strings.Contains(rep.Problems[0].Detail, tc.want) || rep.Problems[0].Hint == "" {
				t.Fatalf("got %+v, want a first problem with %q", rep.Problems, tc.want)
			}
			// Every change refuses it before any device is opened.
			before := treeHash(t, dir)
			f.s.Close()
			_, err = f.s.Publish(ctx, dir)
			var te *TranscriptError
			var re *RepoError
			if !errors.As(err, &te) && !(errors.As(err, &re) && strings.Contains(err.Error(), "transcript is damaged")) {
				t.Fatalf("publish: %v", err)
			}
			if treeHash(t, dir) != before {
				t.Fatal("the repository changed")
			}
		})
	}
}

// TestTranscriptFormatDowngrade: an entry rewritten in the old format
// (which would dodge the anchor checks) after an anchored one is refused.
func TestTranscriptFormatDowngrade(t *testing.T) {
	f := newRotFixture(t)
	if _, err := f.s.Publish(context.Background(), f.dir); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(readTranscriptFile(t, f.dir)), "\n"), "\n")
	var m map[string]any
	if err := jsonUnmarshal(lines[1], &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "anchor", "signed", "repository"} {
		delete(m, k)
	}
	b, err := marshalLine(m)
	if err != nil {
		t.Fatal(err)
	}
	lines[1] = b
	writeLines(t, f.dir, rechain(t, lines))
	rep, err := VerifyTranscript(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Problems[0].Check != "format" || !strings.Contains(rep.Problems[0].Detail, "entry 2 is in the old format, after entry 1 in the anchored one") {
		t.Fatalf("%+v", rep.Problems)
	}
}

func jsonUnmarshal(line string, v any) error { return json.Unmarshal([]byte(line), v) }

func marshalLine(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// TestTranscriptLegacyThenAnchored: a repository of an older rootkeeper
// (entries 1 to 3 without anchors, made by the version before this one)
// where this version published twice: the legacy entries verify, and the
// first anchor covers them, so rewriting one of them is caught.
func TestTranscriptLegacyThenAnchored(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	copyTree(t, "testdata/legacy-repo", dir)
	rep, err := VerifyTranscript(dir)
	if err != nil || !rep.OK || rep.Entries != 5 || rep.Legacy != 3 || rep.AnchoredThrough != 4 {
		t.Fatalf("%v %+v", err, rep)
	}
	lines := strings.Split(strings.TrimSuffix(string(readTranscriptFile(t, dir)), "\n"), "\n")
	lines[1] = strings.Replace(lines[1], `"operator":"`, `"operator":"mallory-`, 1)
	writeLines(t, dir, rechain(t, lines))
	rep, err = VerifyTranscript(dir)
	if err != nil || rep.OK || !strings.Contains(rep.Problems[0].Detail, "was signed on transcript entry 3 with head") {
		t.Fatalf("%v %+v", err, rep.Problems)
	}
}

// TestTranscriptEntryAnchorAndVia: an entry refuses metadata that does not
// carry the head it is appended to, and records how a signature came when
// the change says so (signing bundles).
func TestTranscriptEntryAnchorAndVia(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	copyTree(t, "testdata/legacy-repo", dir)
	ts, err := os.ReadFile(filepath.Join(dir, "metadata", "timestamp.json")) // made on entry 4, written by entry 5
	if err != nil {
		t.Fatal(err)
	}
	info, err := roles.ReadSigned(ts)
	if err != nil || info.Anchor == nil || info.Anchor.Seq != 4 {
		t.Fatalf("%v %+v", err, info)
	}
	now := time.Now()
	_, err = appendTranscript(dir, now, "test", nil, []File{{Path: "metadata/timestamp.json", Data: ts}})
	if err == nil || !strings.Contains(err.Error(), "not the transcript head it was made on") {
		t.Fatalf("metadata made on another head: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(readTranscriptFile(t, dir)), "\n"), "\n")
	writeLines(t, dir, lines[:4])
	via := "bundle:sha256:" + strings.Repeat("0", 64)
	f, err := appendTranscript(dir, now, "test", nil, []File{{Path: "metadata/timestamp.json", Data: ts}},
		signedVia(map[string]string{"metadata/timestamp.json " + info.KeyIDs[0]: via}))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ParseTranscript(f.Data)
	if err != nil {
		t.Fatal(err)
	}
	e := entries[len(entries)-1]
	if len(e.Signed) != 1 || e.Signed[0].Payload != info.Payload || e.Signed[0].Signatures[0].Via != via || e.Removed != nil {
		t.Fatalf("entry %+v", e)
	}
}

// The transcript is parsed once per change: while lockAndLoad holds the
// lock, a read of exactly the bytes parsed gets that parse, any other
// bytes are parsed (and checked) again, and nothing is kept once the lock
// is released.
func TestTranscriptParsedOncePerChange(t *testing.T) {
	f := longLife(t)
	transcriptMemos.Lock()
	left := len(transcriptMemos.m)
	transcriptMemos.Unlock()
	if left != 0 {
		t.Fatalf("%d transcript parses kept after the changes", left)
	}
	data := readTranscriptFile(t, f.dir)
	var first []Entry
	err := lockAndLoad(f.dir, nil, nil, func(*roles.Repo, *Policy) error {
		p := memoOf(f.dir, data)
		if p == nil {
			return errors.New("no parse kept while the lock is held")
		}
		first = p.entries
		_, again, err := readTranscript(f.dir, time.Time{})
		if err != nil {
			return err
		}
		if &again[0] != &first[0] {
			return errors.New("the transcript was parsed again for the same bytes")
		}
		// Other bytes (an entry changed in place): not the kept parse,
		// and the chain check still refuses them.
		edited := bytes.Replace(data, []byte(`"operation":"init"`), []byte(`"operation":"inIt"`), 1)
		if bytes.Equal(edited, data) {
			return errors.New("test edit changed nothing")
		}
		if memoOf(f.dir, edited) != nil {
			return errors.New("a parse kept for other bytes")
		}
		if _, err := parseTranscriptIn(f.dir, edited); err == nil {
			return errors.New("an edited entry passed the chain check")
		}
		if _, err := parseTranscriptIn(f.dir+"/other", data); err != nil {
			return err
		}
		if memoOf(f.dir+"/other", data) != nil {
			return errors.New("a parse kept for a directory whose lock is not held")
		}
		rep, err := VerifyTranscript(f.dir)
		if err != nil {
			return err
		}
		if !rep.OK || rep.Entries != len(first) {
			return fmt.Errorf("transcript verify with the kept parse: %+v", rep)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if memoOf(f.dir, data) != nil {
		t.Fatal("the parse is kept after the lock is released")
	}
}
