package roles

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// Overlay returns base with files laid over it: a path in files shadows
// the same path in base, and directory listings show both. A writer uses it
// to Verify the repository it is about to write before touching disk.
// Files with invalid paths (see fs.ValidPath) are ignored. Later entries
// win over earlier ones with the same path.
func Overlay(base fs.FS, files []File) fs.FS {
	o := &overlay{base: base, files: map[string][]byte{}, dirs: map[string]bool{".": true}}
	for _, f := range files {
		if !fs.ValidPath(f.Path) || f.Path == "." {
			continue
		}
		o.files[f.Path] = f.Data
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			o.dirs[d] = true
		}
	}
	return o
}

type overlay struct {
	base  fs.FS
	files map[string][]byte
	dirs  map[string]bool
}

var (
	_ fs.ReadFileFS = (*overlay)(nil)
	_ fs.ReadDirFS  = (*overlay)(nil)
	_ fs.StatFS     = (*overlay)(nil)
)

func (o *overlay) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if data, ok := o.files[name]; ok {
		return &memFile{info: memInfo{name: path.Base(name), size: int64(len(data))}, r: bytes.NewReader(data)}, nil
	}
	if o.dirs[name] {
		entries, err := o.ReadDir(name)
		if err != nil {
			return nil, err
		}
		return &memDir{info: memInfo{name: path.Base(name), dir: true}, entries: entries}, nil
	}
	if o.shadowed(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if o.base == nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return o.base.Open(name)
}

// shadowed reports whether an overlay file hides a parent of name.
func (o *overlay) shadowed(name string) bool {
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		if _, ok := o.files[d]; ok {
			return true
		}
	}
	return false
}

func (o *overlay) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	if data, ok := o.files[name]; ok {
		return bytes.Clone(data), nil
	}
	if o.dirs[name] {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	if o.shadowed(name) || o.base == nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return fs.ReadFile(o.base, name)
}

func (o *overlay) Stat(name string) (fs.FileInfo, error) {
	f, err := o.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

func (o *overlay) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	if _, ok := o.files[name]; ok {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	merged := map[string]fs.DirEntry{}
	var baseErr error
	if o.base != nil && !o.shadowed(name) {
		entries, err := fs.ReadDir(o.base, name)
		baseErr = err
		for _, e := range entries {
			merged[e.Name()] = e
		}
	} else {
		baseErr = fs.ErrNotExist
	}
	if baseErr != nil && !o.dirs[name] {
		return nil, baseErr
	}
	prefix := name + "/"
	if name == "." {
		prefix = ""
	}
	for p, data := range o.files {
		if rest, ok := strings.CutPrefix(p, prefix); ok && !strings.Contains(rest, "/") {
			merged[rest] = fs.FileInfoToDirEntry(memInfo{name: rest, size: int64(len(data))})
		}
	}
	for d := range o.dirs {
		if rest, ok := strings.CutPrefix(d, prefix); ok && d != name && !strings.Contains(rest, "/") {
			merged[rest] = fs.FileInfoToDirEntry(memInfo{name: rest, dir: true})
		}
	}
	out := make([]fs.DirEntry, 0, len(merged))
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		out = append(out, merged[k])
	}
	return out, nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	info memInfo
	r    *bytes.Reader
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *memFile) Close() error               { return nil }

type memDir struct {
	info    memInfo
	entries []fs.DirEntry
	off     int
}

func (d *memDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}
func (d *memDir) Close() error { return nil }

func (d *memDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if n > len(rest) {
		n = len(rest)
	}
	d.off += n
	return rest[:n], nil
}
