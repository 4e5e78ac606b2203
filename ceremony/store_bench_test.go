package ceremony

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// BenchmarkWriteBins writes a change of 16,384 hashed bins (each a new
// immutable N.bins-XXXX.json), targets, snapshot, timestamp and the
// transcript into a fresh repository directory, as delegate add --bins,
// rotate or revoke do, through the redo journal (commitFiles), which
// every change uses; "apply" is the same files without the journal, the
// floor the journal is measured against.
//
//	ROOTKEEPER_BENCH_BINS   number of bins (default 16384)
//	ROOTKEEPER_BENCH_DIR    where (default a temporary directory; on disk,
//	                        every write is fsynced)
//
//	go test -run '^$' -bench BenchmarkWriteBins -benchtime 1x ./ceremony
func BenchmarkWriteBins(b *testing.B) {
	n := 16384
	if v, err := strconv.Atoi(os.Getenv("ROOTKEEPER_BENCH_BINS")); err == nil && v > 0 {
		n = v
	}
	bin := make([]byte, 700)
	for i := range bin {
		bin[i] = 'x'
	}
	var files []File
	for i := range n {
		files = append(files, File{Path: fmt.Sprintf("metadata/1.bins-%04x.json", i), Data: bin, Immutable: true})
	}
	files = append(files,
		File{Path: "metadata/2.targets.json", Data: bin, Immutable: true},
		File{Path: "metadata/2.snapshot.json", Data: make([]byte, 60*n), Immutable: true},
		File{Path: "metadata/timestamp.json", Data: bin},
		File{Path: TranscriptFile, Data: bin})
	base := os.Getenv("ROOTKEEPER_BENCH_DIR")
	for _, w := range []struct {
		name  string
		write func(string, []File) error
	}{{"apply", applyOnly}, {"journaled", commitFiles2}} {
		b.Run(w.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				dir, err := os.MkdirTemp(base, "rootkeeper-bench-write-")
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := w.write(dir, files); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(files)), "µs/file")
		})
	}
}

func applyOnly(dir string, files []File) error {
	t, err := openTree(dir)
	if err != nil {
		return err
	}
	defer t.close()
	return t.apply(files)
}
