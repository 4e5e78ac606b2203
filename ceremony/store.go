package ceremony

// The store: how rootkeeper puts files into a repository. Every command
// that changes a repository reaches the disk only through commitFiles
// (journal.go), which writes through a tree opened here:
//
//   - tree opens every directory on the way to a file one component at a
//     time from the repository's root and refuses a component that is a
//     symbolic link, so rootkeeper never writes through a link and never
//     outside the repository (os.Root confines every operation to the
//     repository, the checks here refuse links inside it);
//   - tree.apply writes files in rank groups (see rank): each file of a
//     group to a fsynced temporary file beside it, then the group's
//     renames, then one fsync of each directory, then the next group.
//
// writeAtomic is for files outside repositories only (metrics, calendars).

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
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
	switch {
	case errors.Is(e.Err, os.ErrPermission), errors.Is(e.Err, syscall.EROFS):
		return "the directory is not writable by this user; run as the repository's owner or fix its permissions"
	case errors.Is(e.Err, syscall.ENOSPC), errors.Is(e.Err, syscall.EDQUOT):
		return "free space on the repository's file system, then run the command again"
	}
	return ""
}

// LinkError is a symbolic link (or another non-regular file) where
// rootkeeper reads or writes a file or directory of the repository. It
// never writes through one: a link could make it write outside the
// repository, or overwrite a file it does not own.
type LinkError struct {
	Dir, Path string
	What      string // "a symbolic link", "not a regular file", "not a directory"
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("repository %s: %s is %s: rootkeeper does not write through links or into special files; nothing was written", e.Dir, e.Path, e.What)
}

// Hint says what to do.
func (e *LinkError) Hint() string {
	return "replace " + e.Path + " with a real directory or file holding what it should (check where the link pointed and who made it), then run again"
}

// File is one file to write into a repository, relative to its directory.
type File struct {
	Path string
	Data []byte
	// Immutable files (N.root.json, versioned snapshot/targets, hash-named
	// targets) may be written once; rewriting one with other bytes is refused.
	Immutable bool
	// Remove removes the file instead (Data is ignored), as a rotation
	// moves a retired key record out of keys/.
	Remove bool

	// orphan marks an immutable file to write over one that an
	// interrupted run of an older version left and that no published
	// timestamp reaches (repair.go).
	orphan bool
	// before is what plannedWrites found in the file's place (its
	// SHA-256, "" if none), when known: the journal need not read it again.
	before      string
	beforeKnown bool
}

// Ranks of the write order (see rank).
const (
	rankImmutable  = iota // versioned metadata, hash-named targets
	rankOther             // keys/, rootkeeper.yaml, plain targets; removals
	rankMutable           // targets.json, ROLE.json without consistent snapshots
	rankSnapshot          // snapshot.json
	rankTranscript        // transcript.jsonl: recorded before anything is visible
	rankPublish           // N.root.json, then timestamp.json: the publish point
)

// rank orders writes so that a client reading during a write never follows
// a pointer to a file that is not there yet, and so that a change that
// became visible has always been recorded: versioned metadata and
// hash-named targets first, then other files, then mutable metadata, then
// snapshot.json (it points at targets and delegated roles), then the
// transcript entry, and last the files clients look for by name on every
// update — a new root version (N+1.root.json), then timestamp.json (it
// points at the snapshot). These last two are one group: both are written
// and fsynced before either is renamed, so the two renames that publish a
// change follow each other at once.
func rank(f File) int {
	switch {
	case f.Path == "metadata/timestamp.json" || (!f.Remove && rootVersioned.MatchString(f.Path)):
		return rankPublish
	case f.Path == TranscriptFile:
		return rankTranscript
	case f.Remove:
		return rankOther
	case f.Path == "metadata/snapshot.json":
		return rankSnapshot
	case f.Immutable:
		return rankImmutable
	case strings.HasPrefix(f.Path, "metadata/"):
		return rankMutable
	}
	return rankOther
}

// writeOrder sorts files by rank; in the publish group new roots go in
// place before timestamp.json (a client that sees the new timestamp must
// find the root that trusts its key).
func writeOrder(files []File) []File {
	ordered := append([]File(nil), files...)
	sort.SliceStable(ordered, func(i, j int) bool {
		ri, rj := rank(ordered[i]), rank(ordered[j])
		if ri != rj {
			return ri < rj
		}
		return ordered[i].Path != "metadata/timestamp.json" && ordered[j].Path == "metadata/timestamp.json"
	})
	return ordered
}

// visible reports whether a file of this rank is one clients see at once
// once it is in place: the change is published from then on.
func visible(r int) bool { return r == rankPublish }

// checkRepoPath refuses a path rootkeeper does not write: it must be
// clean and relative, under metadata/, targets/ or keys/, or be
// rootkeeper.yaml or transcript.jsonl, and its name must not look like
// one of rootkeeper's temporary files (they are removed after a crash).
func checkRepoPath(p string) error {
	if p == "" || filepath.IsAbs(p) || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return &IOError{Op: "write", Path: p, Err: errors.New("not a relative path")}
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "" || part == "." {
			return &IOError{Op: "write", Path: p, Err: errors.New("path escapes the repository")}
		}
	}
	top, _, nested := strings.Cut(p, "/")
	switch {
	case !nested && (p == PolicyFile || p == TranscriptFile):
	case nested && (top == "metadata" || top == "targets" || top == "keys"):
	default:
		return &IOError{Op: "write", Path: p, Err: errors.New("not a file rootkeeper writes (only metadata/, targets/, keys/, " + PolicyFile + " and " + TranscriptFile + ")")}
	}
	if isTemp(path.Base(p)) {
		return &IOError{Op: "write", Path: p, Err: errors.New("the name looks like one of rootkeeper's temporary files, which are removed after a crash")}
	}
	return nil
}

// isTemp reports whether name is a temporary file of an interrupted
// write: ".NAME.tmp-SUFFIX" (as every version of rootkeeper names them)
// or the scratch file of the writability check.
func isTemp(name string) bool {
	if strings.HasPrefix(name, ".rootkeeper-write-test-") {
		return true
	}
	i := strings.LastIndex(name, ".tmp-")
	return strings.HasPrefix(name, ".") && i > 1
}

// faultAt is called before every operation the store makes in a
// repository — "write", "fsync", "rename", "remove", "mkdir" — with the
// file's path. It does nothing, except in test builds (the crashtest
// tag, fault_crashtest.go), where the kill -9 campaign kills the process
// or fails the operation at a chosen point (docs/reliability.md).
var faultAt = func(op, path string) error { return nil }

// tree is a repository directory opened for writing.
type tree struct {
	dir  string
	root *os.Root
	mu   sync.Mutex
	dirs map[string]*os.Root // open directories by relative path; "." is root
}

func openTree(dir string) (*tree, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &IOError{Op: "open", Path: dir, Err: err}
	}
	return &tree{dir: dir, root: r, dirs: map[string]*os.Root{".": r}}, nil
}

func (t *tree) close() {
	for _, r := range t.dirs {
		r.Close()
	}
	t.dirs = nil
}

// openDir opens the directory rel (slash-separated, "." for the root),
// one component at a time, refusing a component that is a link or not a
// directory. With create, missing directories are made and their parents
// fsynced, so that a new directory survives a crash.
func (t *tree) openDir(rel string, create bool) (*os.Root, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.dirs[rel]; ok {
		return r, nil
	}
	parent, cur := t.root, "."
	for _, name := range strings.Split(rel, "/") {
		next := path.Join(cur, name)
		if r, ok := t.dirs[next]; ok {
			parent, cur = r, next
			continue
		}
		fi, err := parent.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist) && create:
			if err := faultAt("mkdir", next); err != nil {
				return nil, &IOError{Op: "create directory", Path: next, Err: err}
			}
			if err := parent.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, &IOError{Op: "create directory", Path: next, Err: err}
			}
			if err := syncRoot(parent, cur); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, &IOError{Op: "open", Path: next, Err: err}
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, &LinkError{Dir: t.dir, Path: next, What: "a symbolic link"}
		case !fi.IsDir():
			return nil, &LinkError{Dir: t.dir, Path: next, What: "not a directory"}
		}
		r, err := parent.OpenRoot(name)
		if err != nil {
			return nil, &IOError{Op: "open", Path: next, Err: err}
		}
		t.dirs[next] = r
		parent, cur = r, next
	}
	return parent, nil
}

// read returns the bytes of the regular file rel, or exists false. A link
// or special file in its place is refused.
func (t *tree) read(rel string) (data []byte, exists bool, err error) {
	d, err := t.openDir(path.Dir(rel), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	name := path.Base(rel)
	fi, err := d.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, nil
	case err != nil:
		return nil, false, &IOError{Op: "read", Path: rel, Err: err}
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, false, &LinkError{Dir: t.dir, Path: rel, What: "a symbolic link"}
	case !fi.Mode().IsRegular():
		return nil, false, &LinkError{Dir: t.dir, Path: rel, What: "not a regular file"}
	}
	f, err := d.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, false, &IOError{Op: "read", Path: rel, Err: err}
	}
	defer f.Close()
	data, err = io.ReadAll(f)
	if err != nil {
		return nil, false, &IOError{Op: "read", Path: rel, Err: err}
	}
	return data, true, nil
}

// writeTemp writes data to a new temporary file ".NAME.tmp-N" beside rel
// (mode 0644), fsyncs and closes it, and returns its name.
func (t *tree) writeTemp(rel string, data []byte) (string, error) {
	d, err := t.openDir(path.Dir(rel), true)
	if err != nil {
		return "", err
	}
	var f *os.File
	var tmp string
	for range 100 {
		tmp = "." + path.Base(rel) + ".tmp-" + strconv.FormatUint(uint64(rand.Uint32()), 10)
		f, err = d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", &IOError{Op: "write", Path: rel, Err: err}
	}
	fail := func(err error) (string, error) {
		f.Close()
		d.Remove(tmp)
		return "", &IOError{Op: "write", Path: rel, Err: err}
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := faultAt("write", rel); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := faultAt("fsync", rel); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		d.Remove(tmp)
		return "", &IOError{Op: "write", Path: rel, Err: err}
	}
	return tmp, nil
}

// put renames the temporary file tmp (in rel's directory) to rel. A link
// in rel's place is refused (a rename would replace the link itself, but
// a link there is not rootkeeper's).
func (t *tree) put(tmp, rel string) error {
	d, err := t.openDir(path.Dir(rel), false)
	if err != nil {
		return err
	}
	if fi, err := d.Lstat(path.Base(rel)); err == nil && !fi.Mode().IsRegular() {
		d.Remove(tmp)
		return &LinkError{Dir: t.dir, Path: rel, What: "a symbolic link or special file"}
	}
	err = faultAt("rename", rel)
	if err == nil {
		err = d.Rename(tmp, path.Base(rel))
	}
	if err != nil {
		d.Remove(tmp)
		return &IOError{Op: "write", Path: rel, Err: err}
	}
	return nil
}

// remove removes the file rel if it is there.
func (t *tree) remove(rel string) error {
	d, err := t.openDir(path.Dir(rel), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := faultAt("remove", rel); err != nil {
		return &IOError{Op: "remove", Path: rel, Err: err}
	}
	if err := d.Remove(path.Base(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &IOError{Op: "remove", Path: rel, Err: err}
	}
	return nil
}

// syncDir fsyncs the directory rel.
func (t *tree) syncDir(rel string) error {
	d, err := t.openDir(rel, false)
	if err != nil {
		return err
	}
	return syncRoot(d, rel)
}

func syncRoot(r *os.Root, rel string) error {
	d, err := r.Open(".")
	if err != nil {
		return &IOError{Op: "sync", Path: rel, Err: err}
	}
	defer d.Close()
	if err := faultAt("fsync", rel+"/"); err != nil {
		return &IOError{Op: "sync", Path: rel, Err: err}
	}
	if err := d.Sync(); err != nil {
		return &IOError{Op: "sync", Path: rel, Err: err}
	}
	return nil
}

// applyError is a failure part of the way through tree.apply.
type applyError struct {
	err       error
	published bool // a visible file (new root, timestamp) was already in place
}

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

// apply writes files (and removals) into the tree in rank groups: every
// file of a group to a fsynced temporary file, then the group's renames
// and removals, then one fsync of each directory they touched, then the
// next group. So a client never sees a pointer to a file that is not
// there yet, even across a crash, and a directory of 16,384 new bins is
// fsynced once rather than 16,384 times. An immutable file already in
// place with the same bytes is not written again. The caller (the
// journal) has checked every path and what it replaces.
func (t *tree) apply(files []File) error {
	ordered := writeOrder(files)
	published := false
	for start := 0; start < len(ordered); {
		end := start + 1
		for end < len(ordered) && rank(ordered[end]) == rank(ordered[start]) {
			end++
		}
		err := t.applyGroup(ordered[start:end], func() { published = published || visible(rank(ordered[start])) })
		if err != nil {
			return &applyError{err: err, published: published}
		}
		start = end
	}
	return nil
}

// applyGroup writes files whose order among themselves does not matter;
// renamed is called after the first rename.
func (t *tree) applyGroup(files []File, renamed func()) error {
	type pending struct {
		f   File
		tmp string
		err error
	}
	var todo []pending
	for _, f := range files {
		todo = append(todo, pending{f: f})
	}
	// Temporary files are written and fsynced by a few goroutines at
	// once: the file system commits concurrent fsyncs together.
	parallel(len(todo), tempWriters, func(i int) {
		if !todo[i].f.Remove {
			todo[i].tmp, todo[i].err = t.writeTemp(todo[i].f.Path, todo[i].f.Data)
		}
	})
	for _, p := range todo {
		if p.err != nil {
			for _, q := range todo {
				if q.err == nil && q.tmp != "" {
					t.removeTemp(q.f.Path, q.tmp)
				}
			}
			return p.err
		}
	}
	var dirs []string
	seen := map[string]bool{}
	for i, p := range todo {
		var err error
		if p.f.Remove {
			err = t.remove(p.f.Path)
		} else {
			err = t.put(p.tmp, p.f.Path)
		}
		if err != nil {
			for _, q := range todo[i+1:] {
				if q.tmp != "" {
					t.removeTemp(q.f.Path, q.tmp)
				}
			}
			t.syncDirs(dirs) //nolint:errcheck // best effort for the files already renamed; the rename's error is the one to report
			return err
		}
		if i == 0 {
			renamed()
		}
		if d := path.Dir(p.f.Path); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return t.syncDirs(dirs)
}

func (t *tree) removeTemp(rel, tmp string) {
	if d, err := t.openDir(path.Dir(rel), false); err == nil {
		d.Remove(tmp)
	}
}

func (t *tree) syncDirs(dirs []string) error {
	for _, d := range dirs {
		if err := t.syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// tempWriters is how many temporary files applyGroup writes at once.
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

// writeAtomic writes one file outside any repository (metrics, calendars):
// a fsynced temporary file renamed into place, then its directory fsynced.
func writeAtomic(dst string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return &IOError{Op: "write", Path: dst, Err: err}
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return &IOError{Op: "write", Path: dst, Err: err}
	}
	d, err := os.Open(filepath.Dir(dst))
	if err != nil {
		return &IOError{Op: "sync", Path: filepath.Dir(dst), Err: err}
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &IOError{Op: "sync", Path: filepath.Dir(dst), Err: err}
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

// WriteFileAtomic writes data to path atomically (a temporary file beside
// it, fsynced, renamed): for files outside a repository, like metrics.
func WriteFileAtomic(path string, data []byte) error { return writeAtomic(path, data) }
