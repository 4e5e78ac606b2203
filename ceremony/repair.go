package ceremony

// Repair: what older versions of rootkeeper left behind. They wrote
// publish, targets add and targets remove without the journal, so a crash
// between the versioned files and timestamp.json left "orphans": an
// N.snapshot.json, N.targets.json or N.ROLE.json that no published
// timestamp reaches, and hash-named targets that no published targets
// version lists. They blocked every later write ("an immutable file
// already exists with other contents"). A commit now replaces such a file
// when it is in the way and provably unreachable (plannedWrites); Repair
// removes them all, with the temporaries and any pending journal that
// every command handles (recoverRepo).

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

var (
	versionedMeta = regexp.MustCompile(`^metadata/([0-9]+)\.(.+)\.json$`)
	rootVersioned = regexp.MustCompile(`^metadata/[0-9]+\.root\.json$`)
	hashNamed     = regexp.MustCompile(`^([0-9a-f]{64}|[0-9a-f]{128})\.`)
)

// publishedState is what the published timestamp reaches.
type publishedState struct {
	err        error // why it could not be read: nothing is provably unreachable then
	repo       *roles.Repo
	consistent bool
	snapshot   int64            // the snapshot version the timestamp names
	roles      map[string]int64 // each role's version in that snapshot
}

// readPublished reads the published state of dir: timestamp.json, the
// snapshot it names and the roots.
func readPublished(dir string) *publishedState {
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		return &publishedState{err: err}
	}
	p := &publishedState{repo: repo, consistent: repo.Root().Signed.ConsistentSnapshot, roles: map[string]int64{}}
	sm := repo.Timestamp.Signed.Meta["snapshot.json"]
	if sm == nil {
		return &publishedState{err: fmt.Errorf("timestamp.json names no snapshot")}
	}
	p.snapshot = sm.Version
	for name, m := range repo.Snapshot.Signed.Meta {
		p.roles[strings.TrimSuffix(name, ".json")] = m.Version
	}
	return p
}

// orphan reports whether the versioned metadata file p is provably
// unreachable from the published state, and why (or why not). Snapshots
// never drop a role (the preflight refuses it), so a role the published
// snapshot does not list was never published.
func (pub *publishedState) orphan(p string) (string, bool) {
	m := versionedMeta.FindStringSubmatch(p)
	if m == nil {
		return "not a versioned metadata file", false
	}
	if pub.err != nil {
		return "the published state cannot be read (" + excerpt(pub.err.Error(), 200) + ")", false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	role, uerr := url.PathUnescape(m[2])
	switch {
	case err != nil || uerr != nil:
		return "not a version rootkeeper writes", false
	case role == RoleRoot:
		return "clients fetch every root version by name: a root version is never removed", false
	case !pub.consistent:
		return "without consistent snapshots clients never fetch versioned files, and rootkeeper writes none", false
	case role == RoleSnapshot && n > pub.snapshot:
		return fmt.Sprintf("snapshot v%d is newer than v%d, the version the published timestamp names", n, pub.snapshot), true
	case role == RoleSnapshot:
		return fmt.Sprintf("snapshot v%d was published (the timestamp names v%d)", n, pub.snapshot), false
	case role == RoleTimestamp:
		return "not a file rootkeeper writes", false
	}
	v, listed := pub.roles[role]
	switch {
	case !listed:
		return fmt.Sprintf("the published snapshot v%d does not list %s, and snapshots never drop a role: it was never published", pub.snapshot, role), true
	case n > v:
		return fmt.Sprintf("%s v%d is newer than v%d, the version the published snapshot v%d lists", role, n, v, pub.snapshot), true
	}
	return fmt.Sprintf("%s v%d was published (the snapshot lists v%d)", role, n, v), false
}

// orphanCheck decides, file by file, whether a file is provably
// unreachable from the published state; it reads that state once.
type orphanCheck struct {
	dir    string
	pub    *publishedState
	listed map[string]bool
}

func (o *orphanCheck) unreachable(p string) bool {
	if o.pub == nil {
		o.pub = readPublished(o.dir)
	}
	switch {
	case strings.HasPrefix(p, "metadata/"):
		_, orphan := o.pub.orphan(p)
		return orphan
	case strings.HasPrefix(p, "targets/") && hashNamed.MatchString(path.Base(p)) && o.pub.err == nil && o.pub.consistent:
		if o.listed == nil {
			if o.listed, _ = listedTargets(o.dir, o.pub); o.listed == nil {
				return false
			}
		}
		return !o.listed[p]
	}
	return false
}

// RepairOptions say what Repair does.
type RepairOptions struct {
	// DryRun says what would be removed; nothing is written.
	DryRun bool
	// Now is the time of the transcript entry; zero means time.Now.
	Now time.Time
}

// RepairItem is one file Repair removed (or would) or kept, and why.
type RepairItem struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// RepairReport is what Repair did.
type RepairReport struct {
	Repository string       `json:"repository"`
	DryRun     bool         `json:"dry_run"`
	Journal    string       `json:"journal,omitempty"` // the interrupted change finished (or, with DryRun, pending)
	Note       string       `json:"note,omitempty"`
	Removed    []RepairItem `json:"removed"` // with DryRun: would be removed
	Kept       []RepairItem `json:"kept"`    // files that look left over but are kept
	// Reachable counts the versioned metadata files and hash-named
	// targets the published state reaches (kept, not listed).
	Reachable struct {
		Metadata int `json:"metadata"`
		Targets  int `json:"targets"`
	} `json:"reachable"`
}

// Repair removes what interrupted runs left in the repository in dir:
// temporary files, a pending journal (finished, after its checks), and
// orphans of older versions — versioned metadata and hash-named targets
// that no published timestamp reaches. It never removes a root version or
// anything the published state reaches, opens no device, and records
// what it removed in the transcript (the removal goes through the
// journal like any change).
func Repair(dir string, opts RepairOptions) (*RepairReport, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, &RepoError{Dir: dir, Detail: "no such directory", HintText: "check --repo"}
	}
	lock, err := LockRepo(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock(false)
	rep := &RepairReport{Repository: dir, DryRun: opts.DryRun, Removed: []RepairItem{}, Kept: []RepairItem{}}
	if err := repairRecover(dir, rep); err != nil {
		return nil, err
	}
	if err := checkTranscript(dir, !opts.DryRun); err != nil { // transcript_files.go; orphans are only warnings there
		return nil, err
	}
	if _, err := os.Lstat(filepath.Join(dir, "metadata", "timestamp.json")); errors.Is(err, fs.ErrNotExist) {
		rep.Note = "no metadata/timestamp.json: nothing is published yet (an init that did not finish?), so no orphans to look for"
		return rep, nil
	}
	pub := readPublished(dir)
	if pub.err != nil {
		return nil, &RepoError{Dir: dir, Detail: "cannot read the published state, so nothing is removed: " + excerpt(pub.err.Error(), 300),
			HintText: "run rootkeeper verify --repo " + dir + " to see what is wrong"}
	}
	var orphans []string
	if err := repairMetadata(dir, pub, rep, &orphans); err != nil {
		return nil, err
	}
	if err := repairTargets(dir, pub, rep, &orphans); err != nil {
		return nil, err
	}
	if opts.DryRun || len(orphans) == 0 {
		return rep, nil
	}
	return rep, removeOrphans(dir, opts.Now, orphans)
}

// repairRecover runs the recovery (or, with DryRun, says what it would do).
func repairRecover(dir string, rep *RepairReport) error {
	const why = "a temporary file of an interrupted write"
	if !rep.DryRun {
		rec, err := recoverRepo(dir)
		if err != nil {
			return err
		}
		for _, p := range rec.temps {
			rep.Removed = append(rep.Removed, RepairItem{Path: p, Reason: why})
		}
		rep.Journal = rec.journal
		return nil
	}
	temps, err := scanRepo(dir)
	if err != nil {
		return err
	}
	for _, p := range temps {
		rep.Removed = append(rep.Removed, RepairItem{Path: p, Reason: why})
	}
	t, err := openTree(dir)
	if err != nil {
		return err
	}
	defer t.close()
	p, err := inspectJournal(t)
	if err != nil {
		return err
	}
	if p != nil {
		rep.Journal = "would finish " + p.String()
	}
	return nil
}

// repairMetadata lists the orphan versioned metadata files.
func repairMetadata(dir string, pub *publishedState, rep *RepairReport, orphans *[]string) error {
	entries, err := os.ReadDir(filepath.Join(dir, "metadata"))
	if err != nil {
		return &IOError{Op: "read", Path: "metadata", Err: err}
	}
	for _, e := range entries {
		p := "metadata/" + e.Name()
		if !e.Type().IsRegular() || !versionedMeta.MatchString(p) {
			continue
		}
		reason, orphan := pub.orphan(p)
		switch {
		case orphan:
			rep.Removed = append(rep.Removed, RepairItem{Path: p, Reason: reason})
			*orphans = append(*orphans, p)
		case rootVersioned.MatchString(p) && rootNewer(pub, p):
			rep.Kept = append(rep.Kept, RepairItem{Path: p, Reason: reason + " (rootkeeper verify shows whether clients accept it)"})
		default:
			rep.Reachable.Metadata++
		}
	}
	return nil
}

// rootNewer reports whether the root file p is not part of the root
// chain that Load followed.
func rootNewer(pub *publishedState, p string) bool {
	n, _ := strconv.Atoi(versionedMeta.FindStringSubmatch(p)[1])
	return n > len(pub.repo.Roots)
}

// listedTargets returns the hash-named target files that some published
// version of some targets role lists. Every version up to the published
// one is read; if one cannot be, it returns nil and that file's name.
func listedTargets(dir string, pub *publishedState) (map[string]bool, string) {
	listed := map[string]bool{}
	for role, v := range pub.roles {
		if role == RoleSnapshot || role == RoleTimestamp || role == RoleRoot {
			continue
		}
		for n := int64(1); n <= v; n++ {
			p := fmt.Sprintf("metadata/%d.%s.json", n, url.PathEscape(role))
			data, err := os.ReadFile(filepath.Join(dir, p))
			if os.IsNotExist(err) {
				continue
			}
			md, perr := metadata.Targets().FromBytes(data)
			if err != nil || perr != nil {
				return nil, p
			}
			for name, tf := range md.Signed.Targets {
				d, base := path.Split(name)
				for _, h := range tf.Hashes {
					listed["targets/"+d+h.String()+"."+base] = true
				}
			}
		}
	}
	return listed, ""
}

// repairTargets lists the hash-named targets that no published version of
// any targets role lists.
func repairTargets(dir string, pub *publishedState, rep *RepairReport, orphans *[]string) error {
	if !pub.consistent {
		return nil
	}
	listed, unreadable := listedTargets(dir, pub)
	if listed == nil {
		rep.Kept = append(rep.Kept, RepairItem{Path: "targets/", Reason: unreadable + " cannot be read, so no target file is provably unreachable"})
		return nil
	}
	return filepath.WalkDir(filepath.Join(dir, "targets"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return &IOError{Op: "read", Path: p, Err: err}
		}
		if !d.Type().IsRegular() || !hashNamed.MatchString(d.Name()) {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if listed[rel] {
			rep.Reachable.Targets++
			return nil
		}
		rep.Removed = append(rep.Removed, RepairItem{Path: rel, Reason: "a hash-named target that no published version of any targets role lists"})
		*orphans = append(*orphans, rel)
		return nil
	})
}

// removeOrphans removes the orphans through the journal, with a
// transcript entry that lists them.
func removeOrphans(dir string, now time.Time, orphans []string) error {
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	sort.Strings(orphans)
	var files []File
	for _, p := range orphans {
		files = append(files, File{Path: p, Remove: true})
	}
	entry, err := appendTranscript(dir, now, "repair", map[string]any{"removed": orphans}, files)
	if err != nil {
		return err
	}
	files = append(files, entry)
	done, err := commitFiles(dir, &changeset{op: "repair", at: now, files: files})
	if err != nil {
		return err
	}
	if len(done.warnings) > 0 {
		return &RepoError{Dir: dir, Detail: strings.Join(done.warnings, "; ")}
	}
	return nil
}

// excerpt shortens s to at most n bytes (on a rune boundary), marking the
// cut: error messages that quote a file must never print all of it.
func excerpt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

var (
	unknownFieldMsg = regexp.MustCompile(`field (.*) not found in type [\w.]+`)
	fieldName       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,39}$`)
)

// quoteFields keeps a parser's "field X not found" only when X looks like
// a field name: otherwise X is a line of whatever file this is.
func quoteFields(msg string) string {
	return unknownFieldMsg.ReplaceAllStringFunc(msg, func(m string) string {
		name := unknownFieldMsg.FindStringSubmatch(m)[1]
		if fieldName.MatchString(name) {
			return fmt.Sprintf("unknown field %q", name)
		}
		return "a line that is not a field of the file (not shown)"
	})
}

// parseProblem is a parser's error about a repository file, cut to its
// first problem and a short excerpt: a file that is not what it should
// be (rootkeeper.yaml linked to /etc/shadow) is never printed whole.
func parseProblem(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	var parts []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" && !strings.HasSuffix(l, ":") {
			parts = append(parts, l)
		}
	}
	if len(parts) == 0 {
		return excerpt(lines[0], 120)
	}
	msg := excerpt(quoteFields(parts[0]), 120)
	if len(parts) > 1 {
		msg += fmt.Sprintf(" (and %d more %s)", len(parts)-1, map[bool]string{true: "problem", false: "problems"}[len(parts) == 2])
	}
	return msg
}
