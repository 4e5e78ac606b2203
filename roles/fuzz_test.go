package roles

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/fstest"
	"time"
)

// fuzzFS lays fuzz inputs out as a repository; snapshot, targets and the
// delegated role "releases" sit under both their plain and versioned names.
func fuzzFS(root, timestamp, snapshot, targets, releases []byte) fstest.MapFS {
	m := fstest.MapFS{
		"metadata/1.root.json":    {Data: root},
		"metadata/timestamp.json": {Data: timestamp},
	}
	for name, data := range map[string][]byte{"snapshot": snapshot, "targets": targets, "releases": releases} {
		m["metadata/"+name+".json"] = &fstest.MapFile{Data: data}
		m["metadata/1."+name+".json"] = &fstest.MapFile{Data: data}
	}
	return m
}

// FuzzLoad feeds arbitrary metadata to Load and Verify: they must never
// panic, and whatever Load accepts must survive a Files/Load round trip
// byte for byte.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("{}"), []byte("{}"), []byte("{}"), []byte("{}"), []byte("{}"))
	f.Fuzz(func(t *testing.T, root, timestamp, snapshot, targets, releases []byte) {
		fsys := fuzzFS(root, timestamp, snapshot, targets, releases)
		if _, err := Verify(fsys, VerifyOptions{CheckTargets: true, Margins: map[string]time.Duration{"*": time.Hour}}); err != nil {
			t.Fatalf("Verify returned an I/O error on an in-memory repository: %v", err)
		}
		r, err := Load(fsys)
		if err != nil {
			return
		}
		files, err := r.Files()
		if err != nil {
			t.Fatalf("Files failed on a loaded repository: %v", err)
		}
		again, err := Load(Overlay(fstest.MapFS{}, files))
		if err != nil {
			t.Fatalf("Load rejects what Files wrote: %v", err)
		}
		files2, err := again.Files()
		if err != nil {
			t.Fatal(err)
		}
		if len(files2) != len(files) {
			t.Fatalf("round trip changed the file count: %d != %d", len(files2), len(files))
		}
		for i := range files {
			if files[i].Path != files2[i].Path || !bytes.Equal(files[i].Data, files2[i].Data) {
				t.Fatalf("round trip changed %s", files[i].Path)
			}
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzLoad from real
// repositories when ROLES_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ROLES_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set ROLES_WRITE_FUZZ_SEEDS=1 to regenerate the FuzzLoad seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzLoad")
	must(t, os.MkdirAll(dir, 0o755))
	write := func(name string, args ...[]byte) {
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(a)))
		}
		must(t, os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644))
	}
	for _, consistent := range []bool{false, true} {
		tr := newTestRepo(t, consistent)
		files, err := tr.Files()
		must(t, err)
		get := func(suffix string) []byte {
			for _, f := range files {
				if filepath.Base(f.Path) == suffix || filepath.Base(f.Path) == "1."+suffix {
					return f.Data
				}
			}
			t.Fatalf("no %s", suffix)
			return nil
		}
		root, ts, sn, tg, rel := get("root.json"), get("timestamp.json"), get("snapshot.json"), get("targets.json"), get("releases.json")
		name := map[bool]string{false: "plain", true: "consistent"}[consistent]
		write("valid-"+name, root, ts, sn, tg, rel)
		write("tampered-"+name, root, ts, sn, bytes.Replace(tg, []byte(`"version": 1`), []byte(`"version": 2`), 1), rel)
		write("null-meta-"+name, root, bytes.Replace(ts, []byte(`"snapshot.json": {`), []byte(`"snapshot.json": null, "x": {`), 1), sn, tg, rel)
		write("null-role-"+name, bytes.Replace(root, []byte(`"root": {`), []byte(`"root": null, "y": {`), 1), ts, sn, tg, rel)
		write("truncated-"+name, root[:len(root)/2], ts, sn, tg[:len(tg)/3], rel)
		write("succinct-"+name, root, ts, sn,
			[]byte(`{"signed":{"_type":"targets","spec_version":"1.0","version":1,"expires":"2030-01-01T00:00:00Z","targets":{},"delegations":{"keys":{},"succinct_roles":{"keyids":[],"threshold":1,"bit_length":32,"name_prefix":"releases"}}},"signatures":[]}`),
			rel)
	}
}
