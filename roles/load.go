package roles

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Repository layout, relative to the repository directory.
const (
	MetadataDir = "metadata"
	TargetsDir  = "targets"
)

// maxRootVersions bounds the root chain walk so a hostile directory
// cannot keep it running forever.
const maxRootVersions = 1 << 16

func rootPath(version int64) string {
	return fmt.Sprintf("%s/%d.root.json", MetadataDir, version)
}

func timestampPath() string { return MetadataDir + "/timestamp.json" }

// rolePath names the file of a snapshot, targets or delegated targets role.
// Role names are escaped the way go-tuf's updater escapes them.
func rolePath(name string, version int64, consistent bool) string {
	if consistent {
		return fmt.Sprintf("%s/%d.%s.json", MetadataDir, version, url.PathEscape(name))
	}
	return fmt.Sprintf("%s/%s.json", MetadataDir, url.PathEscape(name))
}

var rootFileRE = regexp.MustCompile(`^([0-9]+)\.root\.json$`)

// scanned is a repository read without checking signatures.
type scanned struct {
	roots     []scannedRoot
	timestamp *metadata.Metadata[metadata.TimestampType]
	tsPath    string
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	snPath    string
	targets   *metadata.Metadata[metadata.TargetsType]
	tgPath    string
	delegated []scannedDelegated
	raw       map[string][]byte
	problems  []Problem
	c         *Cache // parses shared with other checks, or nil
	ioErr     error  // a read failure other than a missing file
	// scale multiplies the clients' default length limits: 1 to check a
	// repository as clients do (Verify), loadScale to load one that a
	// change may bring back under the limits (Load).
	scale int64
}

type scannedRoot struct {
	path string
	md   *metadata.Metadata[metadata.RootType]
}

type scannedDelegated struct {
	name, delegator, path string
	md                    *metadata.Metadata[metadata.TargetsType]
}

func (s *scanned) problem(role, file, rule, detail, hint string) {
	s.problems = append(s.problems, Problem{Role: role, File: file, Rule: rule, Detail: detail, Hint: hint})
}

// read returns a file's bytes, read with the limit clients apply to it
// (listed: the length the parent lists, 0 for none). ok is false when the
// file is missing (the caller reports it), above the limit (reported here:
// RuleSize, or RuleLengthHash when a listed length is exceeded) or
// unreadable (an I/O failure that stops the scan); only a missing file
// gives missing true.
func (s *scanned) read(fsys fs.FS, path, role string, listed int64, parent string) (data []byte, ok, missing bool) {
	if s.ioErr != nil {
		return nil, false, false
	}
	limit := metaLimit(role, listed)
	if listed == 0 && s.scale > 1 {
		limit *= s.scale
	}
	data, err := readBounded(fsys, path, limit)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, true
		}
		if e, big := tooLarge(err); big {
			s.sizeProblem(role, path, e, listed, parent)
			return nil, false, false
		}
		s.ioErr = fmt.Errorf("reading %s: %w", path, err)
		return nil, false, false
	}
	s.raw[path] = data
	return data, true, false
}

// sizeProblem reports a file that clients stop downloading.
func (s *scanned) sizeProblem(role, path string, e *errTooLarge, listed int64, parent string) {
	if listed > 0 {
		s.problem(role, path, RuleLengthHash,
			fmt.Sprintf("%s is longer than the %d bytes %s lists for it: clients stop reading it there", path, listed, parent),
			sizeLengthHint(parent))
		return
	}
	s.problem(role, path, RuleSize,
		fmt.Sprintf("%s %s: more than %s: clients refuse to download it", path, e.sizeText(), limitSource(role)),
		sizeHint(role))
}

func sizeLengthHint(parent string) string {
	if strings.HasPrefix(parent, metadata.TIMESTAMP) {
		return "the file was changed after " + parent + " was made: update and re-sign the timestamp"
	}
	return "the file was changed after " + parent + " was made: update and re-sign the snapshot and the timestamp"
}

func sizeHint(role string) string {
	switch role {
	case metadata.ROOT:
		return "a root this large holds too many keys or unknown fields: make a smaller root"
	case metadata.TIMESTAMP:
		return "a timestamp names only the snapshot: remove the unknown fields and extra signatures that make it this large"
	case metadata.SNAPSHOT:
		return "list the snapshot's length in the timestamp (rootkeeper does), or use fewer delegated roles"
	}
	return "spread the targets over delegated roles or hashed bins (rootkeeper delegate add --bins N) so that each file stays under the limit"
}

// parseCount counts parse's decodings (tests check what is decoded twice).
var parseCount atomic.Int64

// parse decodes metadata of type T with go-tuf's own parser.
func parse[T metadata.Roles](data []byte) (md *metadata.Metadata[T], err error) {
	defer func() {
		if r := recover(); r != nil {
			md, err = nil, fmt.Errorf("malformed metadata (%v)", r)
		}
	}()
	parseCount.Add(1)
	md = &metadata.Metadata[T]{}
	if _, err := md.FromBytes(data); err != nil {
		return nil, err
	}
	return md, nil
}

// scanRoots reads the root versions from "from" on and returns the newest
// root (base if there is no newer file), or nil after a problem.
func (s *scanned) scanRoots(fsys fs.FS, from int64, base *metadata.Metadata[metadata.RootType]) *metadata.Metadata[metadata.RootType] {
	newest := base
	n := from
	for ; n < from+maxRootVersions; n++ {
		p := rootPath(n)
		data, ok, missing := s.read(fsys, p, metadata.ROOT, 0, "")
		if !ok {
			if !missing {
				return nil
			}
			break
		}
		md, err := parseCached[metadata.RootType](s.c, data)
		if err != nil {
			s.problem("root", p, RuleParse, fmt.Sprintf("%s: not valid root metadata: %v", p, err),
				"restore this file from the last good copy: clients cannot get past it")
			return nil
		}
		if md.Signed.Version != n {
			s.problem("root", p, RuleVersion, fmt.Sprintf("%s: says version %d, its name says %d", p, md.Signed.Version, n),
				"a root file's name must carry its own version")
			return nil
		}
		s.roots = append(s.roots, scannedRoot{path: p, md: md})
		newest = md
	}
	if s.ioErr != nil {
		return nil
	}
	if newest == nil {
		s.problem("root", rootPath(from), RuleMissing,
			fmt.Sprintf("%s is missing: this is not a TUF repository directory (it must contain metadata/1.root.json)", rootPath(from)),
			"point rootkeeper at the repository directory that contains metadata/ and targets/")
		return nil
	}
	if later := laterRoots(fsys, n); later != "" {
		s.problem("root", rootPath(n), RuleMissing,
			fmt.Sprintf("%s is missing but %s exists: clients stop at root v%d and never see the newer roots", rootPath(n), later, n-1),
			"restore the missing root version")
		return nil
	}
	return newest
}

// scanRepo reads a repository the way a client finds its files: root
// versions from "from" on, timestamp, the snapshot it names, targets and every
// delegated role reachable from targets. base is the already trusted root
// (may be nil) used when no newer root file exists. c (nil for none) parses
// each distinct file once and shares the result: only read-only callers
// pass one.
func scanRepo(fsys fs.FS, from int64, base *metadata.Metadata[metadata.RootType], c *Cache, scale int64) *scanned {
	s := &scanned{raw: map[string][]byte{}, c: c, scale: scale}
	newest := s.scanRoots(fsys, from, base)
	if newest == nil {
		return s
	}
	consistent := newest.Signed.ConsistentSnapshot
	ts := s.scanTimestamp(fsys)
	if ts == nil {
		return s
	}
	sn := s.scanSnapshot(fsys, ts, consistent)
	if sn == nil {
		return s
	}
	tgMeta := sn.Signed.Meta["targets.json"]
	if tgMeta == nil || tgMeta.Version < 1 {
		s.problem(metadata.SNAPSHOT, s.snPath, RuleParse, s.snPath+": does not list targets.json", "")
		return s
	}
	tg, tgPath := s.loadTargets(fsys, metadata.TARGETS, tgMeta, consistent)
	if tg == nil {
		return s
	}
	s.targets, s.tgPath = tg, tgPath
	s.scanDelegated(fsys, sn, tg, consistent)
	return s
}

// scanTimestamp reads timestamp.json; nil when it is missing or unparsable
// (the problem is recorded).
func (s *scanned) scanTimestamp(fsys fs.FS) *metadata.Metadata[metadata.TimestampType] {
	s.tsPath = timestampPath()
	data, ok, missing := s.read(fsys, s.tsPath, metadata.TIMESTAMP, 0, "")
	if !ok {
		if missing {
			s.problem(metadata.TIMESTAMP, s.tsPath, RuleMissing, s.tsPath+" is missing", "sign and write a timestamp")
		}
		return nil
	}
	ts, err := parseCached[metadata.TimestampType](s.c, data)
	if err != nil {
		s.problem(metadata.TIMESTAMP, s.tsPath, RuleParse, fmt.Sprintf("%s: not valid timestamp metadata: %v", s.tsPath, err), "")
		return nil
	}
	s.timestamp = ts
	return ts
}

// scanSnapshot reads the snapshot the timestamp names and checks it
// against the timestamp's length, hashes and version; nil when it is
// missing or unparsable (the problem is recorded).
func (s *scanned) scanSnapshot(fsys fs.FS, ts *metadata.Metadata[metadata.TimestampType], consistent bool) *metadata.Metadata[metadata.SnapshotType] {
	snMeta := ts.Signed.Meta["snapshot.json"]
	if snMeta == nil || snMeta.Version < 1 {
		s.problem(metadata.TIMESTAMP, s.tsPath, RuleParse, s.tsPath+": does not name a snapshot version (meta \"snapshot.json\")", "")
		return nil
	}
	s.snPath = rolePath(metadata.SNAPSHOT, snMeta.Version, consistent)
	data, ok, missing := s.read(fsys, s.snPath, metadata.SNAPSHOT, snMeta.Length, fmt.Sprintf("timestamp v%d", ts.Signed.Version))
	if !ok {
		if missing {
			s.problem(metadata.SNAPSHOT, s.snPath, RuleMissing,
				fmt.Sprintf("%s is missing (timestamp v%d names snapshot v%d)", s.snPath, ts.Signed.Version, snMeta.Version), "")
		}
		return nil
	}
	if err := snMeta.VerifyLengthHashes(data); err != nil {
		s.problem(metadata.SNAPSHOT, s.snPath, RuleLengthHash,
			fmt.Sprintf("%s does not match the length/hashes recorded in timestamp v%d: %v", s.snPath, ts.Signed.Version, err),
			"the snapshot was changed after the timestamp was made: update and re-sign the timestamp")
	}
	sn, err := parseCached[metadata.SnapshotType](s.c, data)
	if err != nil {
		s.problem(metadata.SNAPSHOT, s.snPath, RuleParse, fmt.Sprintf("%s: not valid snapshot metadata: %v", s.snPath, err), "")
		return nil
	}
	if sn.Signed.Version != snMeta.Version {
		s.problem(metadata.SNAPSHOT, s.snPath, RuleVersion,
			fmt.Sprintf("snapshot: %s is version %d but timestamp names version %d", s.snPath, sn.Signed.Version, snMeta.Version),
			"update and re-sign the timestamp after the snapshot")
	}
	s.snapshot = sn
	return sn
}

// scanDelegated reads the delegated roles reachable from targets, breadth
// first, each name once.
func (s *scanned) scanDelegated(fsys fs.FS, sn *metadata.Metadata[metadata.SnapshotType], tg *metadata.Metadata[metadata.TargetsType], consistent bool) {
	type node struct {
		name string
		md   *metadata.Metadata[metadata.TargetsType]
	}
	seen := map[string]bool{metadata.TARGETS: true}
	queue := []node{{metadata.TARGETS, tg}}
	for len(queue) > 0 && s.ioErr == nil {
		cur := queue[0]
		queue = queue[1:]
		for _, child := range s.children(cur.name, cur.md) {
			if seen[child] {
				continue
			}
			seen[child] = true
			file := rolePath(child, 0, false)
			if isTopLevel(child) {
				s.problem(child, file, RuleDelegation,
					fmt.Sprintf("%s delegates to a role named %q, which is a top-level role name", cur.name, child), "rename the delegated role")
				continue
			}
			m := sn.Signed.Meta[child+".json"]
			if m == nil || m.Version < 1 {
				s.problem(child, file, RuleDelegation,
					fmt.Sprintf("%s: delegated by %s but not listed in snapshot v%d: clients cannot fetch it", child, cur.name, sn.Signed.Version),
					"update and re-sign the snapshot")
				continue
			}
			md, p := s.loadTargets(fsys, child, m, consistent)
			if md == nil {
				continue
			}
			s.delegated = append(s.delegated, scannedDelegated{name: child, delegator: cur.name, path: p, md: md})
			queue = append(queue, node{child, md})
		}
	}
}

// children lists the roles a targets role delegates to, in order. For
// succinct (hashed bin) delegations only the bins that snapshot lists are
// returned; missing bins are reported.
func (s *scanned) children(name string, md *metadata.Metadata[metadata.TargetsType]) []string {
	d := md.Signed.Delegations
	if d == nil {
		return nil
	}
	if d.Roles != nil {
		out := make([]string, 0, len(d.Roles))
		for _, r := range d.Roles {
			out = append(out, r.Name)
		}
		return out
	}
	if d.SuccinctRoles == nil || s.snapshot == nil {
		return nil
	}
	sr := d.SuccinctRoles
	var out []string
	for file := range s.snapshot.Signed.Meta {
		role, ok := strings.CutSuffix(file, ".json")
		if ok && sr.IsDelegatedRole(role) {
			out = append(out, role)
		}
	}
	sort.Strings(out)
	if total := uint64(1) << uint(sr.BitLength); uint64(len(out)) < total {
		s.problem(name, "", RuleDelegation,
			fmt.Sprintf("%s: hashed-bin delegation %q has %d bins but snapshot lists only %d: clients fail on targets in the missing bins",
				name, sr.NamePrefix, total, len(out)),
			"create, sign and list every bin")
	}
	return out
}

func (s *scanned) loadTargets(fsys fs.FS, role string, m *metadata.MetaFiles, consistent bool) (*metadata.Metadata[metadata.TargetsType], string) {
	p := rolePath(role, m.Version, consistent)
	data, ok, missing := s.read(fsys, p, role, m.Length, fmt.Sprintf("snapshot v%d", s.snapshot.Signed.Version))
	if !ok {
		if missing {
			s.problem(role, p, RuleMissing,
				fmt.Sprintf("%s is missing (snapshot v%d lists %s v%d)", p, s.snapshot.Signed.Version, role, m.Version), "")
		}
		return nil, p
	}
	if err := m.VerifyLengthHashes(data); err != nil {
		s.problem(role, p, RuleLengthHash,
			fmt.Sprintf("%s does not match the length/hashes recorded in snapshot v%d: %v", p, s.snapshot.Signed.Version, err),
			"the file was changed after the snapshot was made: update and re-sign snapshot and timestamp")
	}
	md, err := parseCached[metadata.TargetsType](s.c, data)
	if err != nil {
		s.problem(role, p, RuleParse, fmt.Sprintf("%s: not valid targets metadata: %v", p, err), "")
		return nil, p
	}
	if md.Signed.Version != m.Version {
		s.problem(role, p, RuleVersion,
			fmt.Sprintf("%s: %s is version %d but snapshot v%d lists version %d", role, p, md.Signed.Version, s.snapshot.Signed.Version, m.Version),
			"update and re-sign the snapshot (and timestamp)")
	}
	return md, p
}

// laterRoots reports a root file numbered above n, if any.
func laterRoots(fsys fs.FS, n int64) string {
	entries, err := fs.ReadDir(fsys, MetadataDir)
	if err != nil {
		return ""
	}
	var found []int64
	for _, e := range entries {
		m := rootFileRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		v, err := strconv.ParseInt(m[1], 10, 64)
		if err == nil && v > n {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return ""
	}
	return rootPath(slices.Min(found))
}

func isTopLevel(name string) bool {
	for _, r := range metadata.TOP_LEVEL_ROLE_NAMES {
		if strings.EqualFold(r, name) {
			return true
		}
	}
	return false
}

// loadScale is how far above the clients' default length limits Load
// still reads a file (16 × 5,000,000 bytes for targets): memory stays
// bounded, and a repository an older rootkeeper let grow past a limit can
// still be loaded and brought back under it (targets remove, publish);
// the preflight refuses any change that leaves it above.
const loadScale = 16

// Load reads the repository in fsys, rooted at the repository directory
// (the one holding metadata/ and targets/): every root version, the
// timestamp, the snapshot it names, targets and all delegated roles
// reachable from targets. Load checks structure, names and versions, not
// signatures: use Verify for that.
func Load(fsys fs.FS) (*Repo, error) { return load(fsys, nil) }

// LoadShared is Load for reading only (status, listings): it parses
// through c, so files that Verify already parsed with the same Cache are
// not parsed again. The Repo shares its metadata with c: it must not be
// changed, and Files encodes it anew rather than keeping the bytes read.
func LoadShared(fsys fs.FS, c *Cache) (*Repo, error) { return load(fsys, cacheOrNew(c)) }

func load(fsys fs.FS, c *Cache) (*Repo, error) {
	if fsys == nil {
		return nil, errors.New("no repository file system")
	}
	s := scanRepo(fsys, 1, nil, c, loadScale)
	if s.ioErr != nil {
		return nil, s.ioErr
	}
	if len(s.problems) > 0 {
		p := s.problems[0]
		msg := p.Detail
		if p.Hint != "" {
			msg += "; " + p.Hint
		}
		if len(s.problems) > 1 {
			msg += fmt.Sprintf(" (and %d more problems: run verify for the full list)", len(s.problems)-1)
		}
		return nil, errors.New(msg)
	}
	r := &Repo{Delegated: map[string]*metadata.Metadata[metadata.TargetsType]{}, raw: map[string]rawFile{}}
	if c != nil {
		r.Roots = make([]*metadata.Metadata[metadata.RootType], 0, len(s.roots))
		for _, sr := range s.roots {
			r.Roots = append(r.Roots, sr.md)
		}
		r.Timestamp, r.Snapshot, r.Targets = s.timestamp, s.snapshot, s.targets
		for _, d := range s.delegated {
			r.Delegated[d.name] = d.md
		}
		return r, nil
	}
	for _, sr := range s.roots {
		r.Roots = append(r.Roots, sr.md)
		r.remember(sr.path, s.raw[sr.path], sr.md)
	}
	r.Timestamp = s.timestamp
	r.remember(s.tsPath, s.raw[s.tsPath], s.timestamp)
	r.Snapshot = s.snapshot
	r.remember(s.snPath, s.raw[s.snPath], s.snapshot)
	r.Targets = s.targets
	r.remember(s.tgPath, s.raw[s.tgPath], s.targets)
	for _, d := range s.delegated {
		r.Delegated[d.name] = d.md
		r.remember(d.path, s.raw[d.path], d.md)
	}
	return r, nil
}
