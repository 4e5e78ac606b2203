package ceremony

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// LockFile is the name of the lock file in a repository directory.
const LockFile = ".rootkeeper.lock"

// Lock is an exclusive lock on a repository directory, held against a
// second rootkeeper run on the same repository.
type Lock struct {
	f       *os.File
	created bool // the lock file did not exist before
}

// LockError reports a repository locked by another run.
type LockError struct{ Dir string }

func (e *LockError) Error() string {
	return fmt.Sprintf("repository %s is in use by another rootkeeper run", e.Dir)
}

// Hint says what to do.
func (e *LockError) Hint() string {
	return "wait for the other run to finish (see its terminal or the scheduled job), then retry"
}

// LockRepo takes the repository lock without waiting.
func LockRepo(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	_, statErr := os.Lstat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, &IOError{Op: "lock", Path: dir, Err: err}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockError{Dir: dir}
		}
		return nil, &IOError{Op: "lock", Path: dir, Err: err}
	}
	return &Lock{f: f, created: os.IsNotExist(statErr)}, nil
}

// Unlock releases the lock. With remove, a lock file this run created is
// removed too (used when a first run wrote nothing).
func (l *Lock) Unlock(remove bool) {
	if l == nil || l.f == nil {
		return
	}
	if remove && l.created {
		os.Remove(l.f.Name())
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}

// IOError is a failure to read or write the repository.
type IOError struct {
	Op   string
	Path string
	Err  error
}

func (e *IOError) Error() string { return fmt.Sprintf("cannot %s %s: %v", e.Op, e.Path, e.Err) }
func (e *IOError) Unwrap() error { return e.Err }

// Hint explains permission problems.
func (e *IOError) Hint() string {
	if errors.Is(e.Err, os.ErrPermission) {
		return "the directory is not writable by this user; run as the repository's owner or fix its permissions"
	}
	return ""
}

// File is one file to write into a repository, relative to its directory.
type File struct {
	Path string
	Data []byte
	// Immutable files (N.root.json, versioned snapshot/targets, hash-named
	// targets) may be written once; rewriting one with other bytes is refused.
	Immutable bool
}

// WriteFiles writes files into dir atomically, in groups: immutable files,
// then other files, then mutable metadata, then snapshot.json, then
// timestamp.json, then the transcript (see rank). Each file of a group goes
// to a temporary file beside its destination and is fsynced; then the
// group's files are renamed into place and each of their directories is
// fsynced once; only then does the next group start. So a client never
// sees a pointer to a file that is not there yet, even across a crash, and
// a directory of 16,384 new bins is fsynced once rather than 16,384 times.
// An immutable file that already exists with the same bytes is left alone;
// with other bytes it is an error (checked for every file before anything
// is written).
func WriteFiles(dir string, files []File) error {
	ordered := append([]File(nil), files...)
	sort.SliceStable(ordered, func(i, j int) bool { return rank(ordered[i]) < rank(ordered[j]) })
	for _, f := range ordered {
		if err := checkRelative(f.Path); err != nil {
			return err
		}
		if !f.Immutable {
			continue
		}
		old, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err == nil && !bytes.Equal(old, f.Data) {
			return &IOError{Op: "write", Path: f.Path, Err: errors.New("an immutable file already exists with other contents (was the repository changed behind rootkeeper's back?)")}
		}
	}
	for start := 0; start < len(ordered); {
		end := start + 1
		for end < len(ordered) && rank(ordered[end]) == rank(ordered[start]) {
			end++
		}
		if err := writeGroup(dir, ordered[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// writeGroup writes files whose order among themselves does not matter:
// every file to a fsynced temporary file, then every rename, then one
// fsync of each directory they are in.
func writeGroup(dir string, files []File) error {
	type pending struct {
		dst, tmp string
		data     []byte
		err      error
	}
	var todo []pending
	for _, f := range files {
		dst := filepath.Join(dir, f.Path)
		if f.Immutable {
			if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, f.Data) {
				continue
			}
		}
		todo = append(todo, pending{dst: dst, data: f.Data})
	}
	// The temporary files are written and fsynced by a few goroutines at
	// once: the file system commits concurrent fsyncs together.
	parallel(len(todo), tempWriters, func(i int) {
		todo[i].tmp, todo[i].err = writeTemp(todo[i].dst, todo[i].data)
	})
	for _, p := range todo {
		if p.err != nil {
			for _, q := range todo {
				if q.err == nil {
					os.Remove(q.tmp)
				}
			}
			return p.err
		}
	}
	var dirs []string
	seen := map[string]bool{}
	syncDirs := func() error {
		for _, d := range dirs {
			if err := syncDir(d); err != nil {
				return err
			}
		}
		return nil
	}
	for i, p := range todo {
		if err := os.Rename(p.tmp, p.dst); err != nil {
			for _, q := range todo[i:] {
				os.Remove(q.tmp)
			}
			syncDirs() //nolint:errcheck // best effort for the files already renamed; the rename's error is the one to report
			return &IOError{Op: "write", Path: p.dst, Err: err}
		}
		if d := filepath.Dir(p.dst); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return syncDirs()
}

// tempWriters is how many temporary files writeGroup writes at once.
const tempWriters = 8

// parallel calls fn(0) … fn(n-1) from up to workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	if n == 1 || workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// rank orders writes so that a client reading during a write never follows
// a pointer to a file that is not there yet: immutable files, then other
// files, then mutable metadata, then snapshot.json (it points at targets
// and delegated roles), then timestamp.json (it points at the snapshot),
// and the transcript entry last, so that it records only published changes.
func rank(f File) int {
	switch {
	case f.Path == TranscriptFile: // recorded once the change is published
		return 5
	case f.Path == "metadata/timestamp.json":
		return 4
	case f.Path == "metadata/snapshot.json":
		return 3
	case f.Immutable:
		return 0
	case strings.HasPrefix(f.Path, "metadata/"):
		return 2
	}
	return 1
}

func checkRelative(p string) error {
	if p == "" || filepath.IsAbs(p) || strings.Contains(p, "\\") {
		return &IOError{Op: "write", Path: p, Err: errors.New("not a relative path")}
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "" || part == "." {
			return &IOError{Op: "write", Path: p, Err: errors.New("path escapes the repository")}
		}
	}
	return nil
}

// writeAtomic writes one file: a fsynced temporary file renamed into
// place, then its directory fsynced.
func writeAtomic(dst string, data []byte) error {
	tmp, err := writeTemp(dst, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return &IOError{Op: "write", Path: dst, Err: err}
	}
	return syncDir(filepath.Dir(dst))
}

// writeTemp writes data to a new temporary file beside dst (".NAME.tmp-*",
// mode 0644), fsyncs and closes it, and returns its name. The directory
// is created (durably) if needed.
func writeTemp(dst string, data []byte) (string, error) {
	dir := filepath.Dir(dst)
	if err := mkdirAll(dir); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", &IOError{Op: "write", Path: dst, Err: err}
	}
	fail := func(err error) (string, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", &IOError{Op: "write", Path: dst, Err: err}
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", &IOError{Op: "write", Path: dst, Err: err}
	}
	return tmp.Name(), nil
}

// mkdirAll creates dir and its parents, fsyncing each parent whose entries
// changed, so a new directory survives a crash.
func mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &IOError{Op: "create directory", Path: dir, Err: errors.New("a file is in the way")}
		}
		return nil
	}
	if err := mkdirAll(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return &IOError{Op: "create directory", Path: dir, Err: err}
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return &IOError{Op: "sync", Path: dir, Err: err}
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &IOError{Op: "sync", Path: dir, Err: err}
	}
	return nil
}

// checkWritable fails early, before any device is touched, when dir cannot
// be written.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".rootkeeper-write-test-*")
	if err != nil {
		return &IOError{Op: "write to", Path: dir, Err: err}
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
