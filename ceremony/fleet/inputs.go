package fleet

import (
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"io/fs"
	"slices"
	"sync"
)

// inputs is a file system that records what was read through it: every
// file opened or read (whether it exists, its size and mode, the SHA-256
// of what was read of it and whether that was all of it), every directory
// listed and every file stat'ed.
// same tells whether reading it all again finds exactly the same: a check
// whose result depends only on what it reads (and on the time) would find
// what it found before. The records hold digests, never contents.
type inputs struct {
	fsys fs.FS
	mu   sync.Mutex
	seen map[inputKey]inputState
	// unstable: an input was found to be two different things
	unstable bool
	// open counts the files opened and not closed yet: what was read of
	// them is not recorded until they are closed.
	open int
}

type inputKind uint8

const (
	inputFile inputKind = iota + 1 // opened or read: existence, size, mode, content
	inputDir                       // listed: every entry's name and type
	inputStat                      // stat'ed: existence, size, mode
)

type inputKey struct {
	kind inputKind
	name string
}

// inputState is what one input was: an error (its text; a missing file is
// "not exist") or a digest of what it held.
type inputState struct {
	err string
	sum [32]byte
	// Of a file read: how many bytes were read, and whether its end was
	// reached (a reader that stops at a size limit reads a prefix; the
	// same prefix of the same size of file is the same input to it).
	n   int64
	eof bool
}

func recordInputs(fsys fs.FS) *inputs {
	return &inputs{fsys: fsys, seen: map[inputKey]inputState{}}
}

// note records what input k was found to be. An input found to be two
// different things in one check (a file changed while it was read) makes
// the record unstable: same is then false.
func (in *inputs) note(k inputKey, st inputState) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if old, ok := in.seen[k]; ok && old != st {
		in.unstable = true
	}
	in.seen[k] = st
}

// stateOf reads input k of fsys as it is now, the way it was read when it
// was recorded as was.
func stateOf(fsys fs.FS, k inputKey, was inputState) inputState {
	switch k.kind {
	case inputDir:
		entries, err := fs.ReadDir(fsys, k.name)
		if err != nil {
			return errState(err)
		}
		return dirState(entries)
	case inputStat:
		fi, err := fs.Stat(fsys, k.name)
		if err != nil {
			return errState(err)
		}
		return infoState(fi)
	}
	f, err := fsys.Open(k.name)
	if err != nil {
		return errState(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return errState(err)
	}
	// Read what was read before: as many bytes, and one more if the end
	// was reached then (it must be reached now at the same place).
	content := sha256.New()
	limit := was.n
	if was.eof {
		limit++
	}
	n, err := io.Copy(content, io.LimitReader(f, limit))
	if err != nil {
		return errState(err)
	}
	return readState(fi, content, n, was.eof && n == was.n)
}

// readState is the state of a file of which n bytes were read (eof: up to
// its end), whose digest is content.
func readState(fi fs.FileInfo, content hash.Hash, n int64, eof bool) inputState {
	h := sha256.New()
	writeInfo(h, fi)
	h.Write(content.Sum(nil))
	st := sumState(h)
	st.n, st.eof = n, eof
	return st
}

func dirState(entries []fs.DirEntry) inputState {
	h := sha256.New()
	for _, e := range entries {
		t := uint32(e.Type())
		h.Write([]byte(e.Name()))
		h.Write([]byte{0, byte(t), byte(t >> 8), byte(t >> 16), byte(t >> 24)})
	}
	return sumState(h)
}

func infoState(fi fs.FileInfo) inputState {
	h := sha256.New()
	writeInfo(h, fi)
	return sumState(h)
}

func sumState(h hash.Hash) inputState {
	var st inputState
	h.Sum(st.sum[:0])
	return st
}

func writeInfo(w io.Writer, fi fs.FileInfo) {
	var b [12]byte
	size, mode := uint64(fi.Size()), uint32(fi.Mode())
	for i := range 8 {
		b[i] = byte(size >> (8 * i))
	}
	for i := range 4 {
		b[8+i] = byte(mode >> (8 * i))
	}
	w.Write(b[:])
}

func errState(err error) inputState {
	if errors.Is(err, fs.ErrNotExist) {
		return inputState{err: "not exist"}
	}
	return inputState{err: err.Error()}
}

// inputRecord is one input and what it was.
type inputRecord struct {
	key   inputKey
	state inputState
}

// freeze ends the recording: what was recorded, in order, or nil if an
// input was found to be two different things or a file is still open
// (what was read of it is not known yet).
func (in *inputs) freeze() []inputRecord {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.unstable || in.open != 0 {
		return nil
	}
	out := make([]inputRecord, 0, len(in.seen))
	for k, st := range in.seen {
		out = append(out, inputRecord{k, st})
	}
	slices.SortFunc(out, func(a, b inputRecord) int {
		if a.key.name != b.key.name {
			if a.key.name < b.key.name {
				return -1
			}
			return 1
		}
		return int(a.key.kind) - int(b.key.kind)
	})
	return out
}

// same reports whether every input of recs (a frozen recording over fsys)
// is still what it was.
func same(fsys fs.FS, recs []inputRecord) bool {
	if recs == nil {
		return false
	}
	for _, r := range recs {
		if stateOf(fsys, r.key, r.state) != r.state {
			return false
		}
	}
	return true
}

// same reports whether every input recorded is still what it was.
func (in *inputs) same() bool { return same(in.fsys, in.freeze()) }

// Open opens the file; what it is (its size, mode and whole content, read
// to the end on Close if the reader stopped before) is recorded when it is
// closed.
func (in *inputs) Open(name string) (fs.File, error) {
	f, err := in.fsys.Open(name)
	if err != nil {
		in.note(inputKey{inputFile, name}, errState(err))
		return nil, err
	}
	in.mu.Lock()
	in.open++
	in.mu.Unlock()
	return &inputFileReader{File: f, in: in, name: name, h: sha256.New()}, nil
}

// ReadFile reads the file and records what it read.
func (in *inputs) ReadFile(name string) ([]byte, error) {
	f, err := in.Open(name)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return data, nil
}

// ReadDir lists the directory and records the listing.
func (in *inputs) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(in.fsys, name)
	k := inputKey{inputDir, name}
	if err != nil {
		in.note(k, errState(err))
		return nil, err
	}
	in.note(k, dirState(entries))
	return entries, nil
}

// Stat stats the file and records its existence, size and mode.
func (in *inputs) Stat(name string) (fs.FileInfo, error) {
	fi, err := fs.Stat(in.fsys, name)
	k := inputKey{inputStat, name}
	if err != nil {
		in.note(k, errState(err))
		return nil, err
	}
	in.note(k, infoState(fi))
	return fi, nil
}

// inputFileReader hashes what is read of a file opened through inputs.
type inputFileReader struct {
	fs.File
	in     *inputs
	name   string
	h      hash.Hash
	n      int64
	eof    bool
	info   fs.FileInfo
	failed error
}

func (r *inputFileReader) Stat() (fs.FileInfo, error) {
	fi, err := r.File.Stat()
	if err == nil && r.info == nil {
		r.info = fi
	}
	return fi, err
}

func (r *inputFileReader) Read(p []byte) (int, error) {
	n, err := r.File.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	switch {
	case err == io.EOF:
		r.eof = true
	case err != nil && r.failed == nil:
		r.failed = err
	}
	return n, err
}

// Close records the file — its size and mode, and what was read of it —
// and closes it.
func (r *inputFileReader) Close() error {
	k := inputKey{inputFile, r.name}
	st := func() inputState {
		if r.info == nil {
			fi, err := r.File.Stat()
			if err != nil {
				return errState(err)
			}
			r.info = fi
		}
		if r.failed != nil {
			return errState(r.failed)
		}
		return readState(r.info, r.h, r.n, r.eof)
	}()
	r.in.note(k, st)
	r.in.mu.Lock()
	r.in.open--
	r.in.mu.Unlock()
	return r.File.Close()
}
