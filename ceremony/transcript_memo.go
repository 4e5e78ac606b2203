package ceremony

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// The transcript is parsed once per change. A change reads it several
// times under its lock (lockAndLoad's readTranscript, checkTranscript's
// whole verification, the plan's searches, appendTranscript), and its
// parse grows with every entry: a repository re-signed daily has hundreds.
// While lockAndLoad holds a repository's lock, the parse of the transcript
// bytes it read is kept for that directory; every later read of the
// transcript within the change still reads the file and uses the parse
// only if the bytes are exactly the same. The memo is dropped when the
// lock is released: nothing is kept across changes, repositories or runs.

type parsedTranscript struct {
	data    []byte
	entries []Entry
	hashes  []string // SHA-256 (hex) of each line
}

var transcriptMemos = struct {
	sync.Mutex
	m map[string]*parsedTranscript // by directory; nil value: the lock is held, nothing parsed yet
}{m: map[string]*parsedTranscript{}}

// memoTranscripts keeps the parse of dir's transcript until the returned
// function is called (lockAndLoad, while it holds dir's lock).
func memoTranscripts(dir string) func() {
	transcriptMemos.Lock()
	transcriptMemos.m[dir] = nil
	transcriptMemos.Unlock()
	return func() {
		transcriptMemos.Lock()
		delete(transcriptMemos.m, dir)
		transcriptMemos.Unlock()
	}
}

// memoOf returns the parse of exactly data as dir's transcript, if one is
// kept.
func memoOf(dir string, data []byte) *parsedTranscript {
	transcriptMemos.Lock()
	p := transcriptMemos.m[dir]
	transcriptMemos.Unlock()
	if p != nil && bytes.Equal(p.data, data) {
		return p
	}
	return nil
}

// parseTranscriptIn is ParseTranscript of dir's transcript bytes data,
// once per change (see above).
func parseTranscriptIn(dir string, data []byte) ([]Entry, error) {
	if p := memoOf(dir, data); p != nil {
		return p.entries, nil
	}
	entries, hashes, err := parseTranscript(data)
	if err != nil {
		return nil, err
	}
	transcriptMemos.Lock()
	if p, held := transcriptMemos.m[dir]; held && p == nil {
		transcriptMemos.m[dir] = &parsedTranscript{data: bytes.Clone(data), entries: entries, hashes: hashes}
	}
	transcriptMemos.Unlock()
	return entries, nil
}

// parseTranscript parses a transcript and checks its chain; it returns the
// entries and the hash of each line.
func parseTranscript(data []byte) ([]Entry, []string, error) {
	var out []Entry
	var hashes []string
	prev := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, min(len(data)+1, 64<<10)), 64<<20) // grows as needed: a 1 MB start cost batches 1 MB a repository, 64 kB still 5 % of their allocations
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, nil, fmt.Errorf("line %d: not a transcript entry: %v", n, err)
		}
		if e.Seq != n {
			return nil, nil, fmt.Errorf("line %d: entry number %d, expected %d (an entry was removed or moved)", n, e.Seq, n)
		}
		if e.Prev != prev {
			return nil, nil, fmt.Errorf("line %d: the chain is broken (the entry before it was changed or removed)", n)
		}
		prev = sha256hex(line)
		out = append(out, e)
		hashes = append(hashes, prev)
	}
	return out, hashes, sc.Err()
}
