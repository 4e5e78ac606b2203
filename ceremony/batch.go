package ceremony

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// ---------------------------------------------------------------------------
// Choosing the repositories.

// ExpandRepos returns the directories that glob matches, sorted (files
// are left out). A glob that matches no directory is an error: a
// scheduled job with a wrong path must not report "all healthy".
func ExpandRepos(glob string) ([]string, error) {
	matches, err := filepath.Glob(glob)
	if err != nil {
		return nil, &RepoError{Detail: fmt.Sprintf("--repos %q: %v", glob, err), HintText: "quote the pattern, e.g. --repos '/srv/tuf/*'"}
	}
	var out []string
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.IsDir() {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, &RepoError{Detail: fmt.Sprintf("--repos %q matches no directory", glob), HintText: "quote the pattern so that rootkeeper, not the shell, expands it, and check the path"}
	}
	sort.Strings(out)
	return out, nil
}

// ReadRepoList reads repository directories from a list, one a line;
// blank lines and lines starting with # are skipped, duplicates dropped.
func ReadRepoList(r io.Reader, name string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || seen[line] {
			continue
		}
		seen[line] = true
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, &IOError{Op: "read", Path: name, Err: err}
	}
	if len(out) == 0 {
		return nil, &RepoError{Detail: "--repos-from " + name + " lists no repository", HintText: "write one repository directory a line"}
	}
	return out, nil
}

func workers(n int) int {
	if n > 0 {
		return n
	}
	return max(4, runtime.GOMAXPROCS(0))
}

// ---------------------------------------------------------------------------
// Re-signing many repositories.

// BatchOptions tune ResignBatch.
type BatchOptions struct {
	ResignOptions
	// Workers is how many repositories are worked on at once (signing is
	// serialized by each device; the disk writes overlap); 0 means 4 or
	// GOMAXPROCS, whichever is more.
	Workers int
	// Progress is called after each repository, from one goroutine at a
	// time, with the number done so far.
	Progress func(done, total int, r *ResignResult)
}

// BatchReport summarizes a batch. It keeps only the repositories that
// need attention (failed, waiting, partly re-signed, not started), so
// that its size does not grow with the number of healthy repositories;
// BatchOptions.Progress sees every result.
type BatchReport struct {
	Total     int             `json:"total"`
	Counts    map[Outcome]int `json:"counts"`
	Stopped   string          `json:"stopped,omitempty"`
	Attention []*ResignResult `json:"attention,omitempty"`
	Signed    map[string]int  `json:"signed_roles"` // role → repositories where it was re-signed
	Elapsed   time.Duration   `json:"-"`
	Seconds   float64         `json:"seconds"`
}

// Worst returns the worst outcome of the batch.
func (b *BatchReport) Worst() Outcome {
	for _, o := range []Outcome{OutcomeFailed, OutcomeNotStarted, OutcomeWaiting, OutcomePartial, OutcomeDryRun, OutcomeResigned} {
		if b.Counts[o] > 0 {
			return o
		}
	}
	return OutcomeNothingDue
}

// ResignBatch re-signs what is due in every repository of dirs with one
// session, so that each token is opened and logged in to once. Each
// repository is locked and written on its own, all or nothing (see
// Resign): one that fails is reported and the others go on. When a device
// fails while signing (a token pulled out), the batch stops: repositories
// already done are complete, the rest are untouched and reported as not
// started, and running the same command again continues.
func (s *Session) ResignBatch(ctx context.Context, dirs []string, opts BatchOptions) *BatchReport {
	start := time.Now()
	rep := &BatchReport{Total: len(dirs), Counts: map[Outcome]int{}, Signed: map[string]int{}}
	st := &resignState{quiet: true}
	notStarted := opts.At
	if opts.DryRun && opts.At.IsZero() {
		opts.At = s.now() // a dry run plans the whole batch as of one time
	}
	var stopped atomic.Bool
	var stopOnce sync.Once
	var stopReason string
	jobs := make(chan string)
	results := make(chan *ResignResult)
	var wg sync.WaitGroup
	for range min(workers(opts.Workers), max(1, len(dirs))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dir := range jobs {
				if stopped.Load() || ctx.Err() != nil {
					at := notStarted
					if at.IsZero() {
						at = s.now()
					}
					results <- &ResignResult{Repository: dir, At: at.UTC().Truncate(time.Second), Outcome: OutcomeNotStarted}
					continue
				}
				r, err := s.resign(ctx, dir, opts.ResignOptions, st)
				var se *SignError
				if err != nil && (errors.As(err, &se) || ctx.Err() != nil) {
					stopOnce.Do(func() {
						stopReason = err.Error()
						if ctx.Err() != nil {
							stopReason = "interrupted: " + ctx.Err().Error()
						}
						stopped.Store(true)
					})
				}
				results <- r
			}
		}()
	}
	go func() {
		for _, d := range dirs {
			jobs <- d
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	done := 0
	for r := range results {
		done++
		rep.Counts[r.Outcome]++
		for _, role := range r.Resigned {
			rep.Signed[role]++
		}
		switch r.Outcome {
		case OutcomeFailed, OutcomeWaiting, OutcomePartial, OutcomeNotStarted:
			rep.Attention = append(rep.Attention, r)
		}
		if opts.Progress != nil {
			opts.Progress(done, len(dirs), r)
		}
	}
	sort.Slice(rep.Attention, func(i, j int) bool { return rep.Attention[i].Repository < rep.Attention[j].Repository })
	rep.Stopped = stopReason
	rep.Elapsed = time.Since(start)
	rep.Seconds = math.Round(rep.Elapsed.Seconds()*1000) / 1000
	return rep
}

// ---------------------------------------------------------------------------
// The status of many repositories.

// RepoStatus is the status of one repository of many, or why it could not
// be read.
type RepoStatus struct {
	Repository string        `json:"repository"`
	Status     *StatusReport `json:"status,omitempty"`
	Error      string        `json:"error,omitempty"`
	Hint       string        `json:"hint,omitempty"`
}

// StatusMany reads the status of every repository in dirs at time at,
// several at once; the result is in the order of dirs.
func StatusMany(ctx context.Context, dirs []string, at time.Time, nworkers int) []RepoStatus {
	out := make([]RepoStatus, len(dirs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers(nworkers), max(1, len(dirs))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(dirs) {
					return
				}
				out[i].Repository = dirs[i]
				if ctx.Err() != nil {
					out[i].Error = ctx.Err().Error()
					continue
				}
				st, err := Status(dirs[i], at)
				if err != nil {
					out[i].Error, out[i].Hint = err.Error(), hsm.HintOf(err)
					continue
				}
				out[i].Status = st
			}
		}()
	}
	wg.Wait()
	return out
}

// FleetSummary counts repositories by state.
type FleetSummary struct {
	Healthy, Due, Invalid, Errors int
}

// Summarize counts the states of statuses.
func Summarize(statuses []RepoStatus) FleetSummary {
	var f FleetSummary
	for _, s := range statuses {
		switch {
		case s.Status == nil:
			f.Errors++
		case s.Status.Health == Invalid:
			f.Invalid++
		case s.Status.Health == Due:
			f.Due++
		default:
			f.Healthy++
		}
	}
	return f
}

// currentRoles returns each role's newest entry (a repository's status
// lists every root version of its chain).
func currentRoles(st *StatusReport) []RoleStatus {
	idx := map[string]int{}
	var out []RoleStatus
	for _, r := range st.Roles {
		if i, ok := idx[r.Role]; ok {
			if r.Version >= out[i].Version {
				out[i] = r
			}
			continue
		}
		idx[r.Role] = len(out)
		out = append(out, r)
	}
	return out
}

// ---------------------------------------------------------------------------
// Prometheus (node_exporter textfile collector).

func promEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func promFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// FormatPrometheus writes statuses in the Prometheus text exposition
// format, for node_exporter's textfile collector.
func FormatPrometheus(w io.Writer, at time.Time, statuses []RepoStatus) error {
	var b bytes.Buffer
	type metric struct{ name, help string }
	series := map[string][]string{}
	add := func(name, labels string, v float64) {
		series[name] = append(series[name], name+"{"+labels+"} "+promFloat(v))
	}
	metrics := []metric{
		{"rootkeeper_status_time_seconds", "When rootkeeper last read the repositories (Unix time; --at if given)."},
		{"rootkeeper_repositories", "Repositories by state: healthy, due (a role inside its re-signing window), invalid (clients refuse it), error (could not be read)."},
		{"rootkeeper_repository_up", "1 if the repository's status could be read, 0 if not."},
		{"rootkeeper_repository_health", "Repository health: 0 healthy, 1 due for re-signing, 2 invalid (clients refuse it)."},
		{"rootkeeper_role_health", "Role health: 0 healthy, 1 due for re-signing, 2 invalid."},
		{"rootkeeper_role_expiry_timestamp_seconds", "When the role's current metadata expires (Unix time)."},
		{"rootkeeper_role_resign_window_seconds", "The role's re-signing window: it is due when less than this is left."},
		{"rootkeeper_role_version", "The role's current metadata version."},
		{"rootkeeper_role_signatures_valid", "Valid signatures by distinct keys of the role."},
		{"rootkeeper_role_signatures_needed", "The role's signature threshold."},
	}
	sum := Summarize(statuses)
	add("rootkeeper_status_time_seconds", "", float64(at.Unix()))
	for _, kv := range []struct {
		state string
		n     int
	}{{"healthy", sum.Healthy}, {"due", sum.Due}, {"invalid", sum.Invalid}, {"error", sum.Errors}} {
		add("rootkeeper_repositories", `state="`+kv.state+`"`, float64(kv.n))
	}
	for _, s := range statuses {
		repo := `repository="` + promEscape(s.Repository) + `"`
		if s.Status == nil {
			add("rootkeeper_repository_up", repo, 0)
			continue
		}
		add("rootkeeper_repository_up", repo, 1)
		add("rootkeeper_repository_health", repo, float64(s.Status.Health))
		for _, r := range currentRoles(s.Status) {
			l := repo + `,role="` + promEscape(r.Role) + `"`
			add("rootkeeper_role_health", l, float64(r.Health))
			add("rootkeeper_role_expiry_timestamp_seconds", l, float64(r.Expires.Unix()))
			if w, err := ParseDuration(r.Window); err == nil {
				add("rootkeeper_role_resign_window_seconds", l, w.D().Seconds())
			}
			add("rootkeeper_role_version", l, float64(r.Version))
			add("rootkeeper_role_signatures_valid", l, float64(r.ValidSignatures))
			add("rootkeeper_role_signatures_needed", l, float64(r.Threshold))
		}
	}
	for _, m := range metrics {
		lines := series[m.name]
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", m.name, m.help, m.name)
		for _, l := range lines {
			b.WriteString(strings.Replace(l, "{}", "", 1))
			b.WriteByte('\n')
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WritePrometheus writes the metrics file at path atomically (a temporary
// file beside it, fsynced, renamed), so that node_exporter never reads half
// a file. Name it *.prom in the collector's directory.
func WritePrometheus(path string, at time.Time, statuses []RepoStatus) error {
	var b bytes.Buffer
	if err := FormatPrometheus(&b, at, statuses); err != nil {
		return err
	}
	return writeAtomic(path, b.Bytes())
}

// ---------------------------------------------------------------------------
// The calendar of offline ceremonies.

// CalendarEntry is when an offline role of a repository is next due for
// re-signing by officers: root, targets and delegated targets roles
// (snapshot and timestamp are re-signed by the scheduled job).
type CalendarEntry struct {
	Repository string    `json:"repository"`
	Role       string    `json:"role"`
	Version    int64     `json:"version"`
	Due        time.Time `json:"due"` // when the role enters its re-signing window
	Expires    time.Time `json:"expires"`
	Window     string    `json:"window"`
	Threshold  int       `json:"threshold"`
	Keys       []string  `json:"keys,omitempty"` // key URIs from the policy
	State      Health    `json:"state"`
}

// Calendar lists the next offline ceremonies of the repositories whose
// statuses are given, soonest first.
func Calendar(statuses []RepoStatus) []CalendarEntry {
	var out []CalendarEntry
	for _, s := range statuses {
		if s.Status == nil {
			continue
		}
		pol, _ := LoadPolicy(s.Repository)
		for _, r := range currentRoles(s.Status) {
			if r.Role == RoleSnapshot || r.Role == RoleTimestamp {
				continue
			}
			w, _ := ParseDuration(r.Window)
			e := CalendarEntry{Repository: s.Repository, Role: r.Role, Version: r.Version, Expires: r.Expires.UTC(),
				Due: r.Expires.Add(-w.D()).UTC(), Window: r.Window, Threshold: r.Threshold, State: r.Health}
			if pol != nil {
				for _, k := range pol.Role(policyRole(pol, r.Role)).Keys {
					e.Keys = append(e.Keys, objectOf(k))
				}
			}
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Due.Equal(b.Due) {
			return a.Due.Before(b.Due)
		}
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		return a.Repository < b.Repository
	})
	return out
}

// CeremonyGroup is the entries of one role due on the same day: one
// sitting of the officers.
type CeremonyGroup struct {
	Role    string          `json:"role"`
	Day     time.Time       `json:"day"`     // the due day (UTC midnight)
	Expires time.Time       `json:"expires"` // the earliest expiry of the group
	Entries []CalendarEntry `json:"entries"`
}

// GroupCeremonies groups entries by role and due day, soonest first.
func GroupCeremonies(entries []CalendarEntry) []CeremonyGroup {
	idx := map[string]int{}
	var out []CeremonyGroup
	for _, e := range entries {
		day := e.Due.UTC().Truncate(24 * time.Hour)
		k := e.Role + "\x00" + day.Format("20060102")
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, CeremonyGroup{Role: e.Role, Day: day, Expires: e.Expires})
		}
		g := &out[i]
		g.Entries = append(g.Entries, e)
		if e.Expires.Before(g.Expires) {
			g.Expires = e.Expires
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Day.Equal(out[j].Day) {
			return out[i].Day.Before(out[j].Day)
		}
		return out[i].Role < out[j].Role
	})
	return out
}

// icsText escapes a TEXT value (RFC 5545, 3.3.11).
func icsText(s string) string {
	return strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\r\n", `\n`, "\n", `\n`).Replace(s)
}

// icsFold folds a content line into lines of at most 75 octets, each
// continuation starting with a space, never splitting a UTF-8 sequence,
// each ending in CRLF (RFC 5545, 3.1).
func icsFold(b *bytes.Buffer, line string) {
	limit := 75
	for len(line) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		b.WriteString(line[:cut])
		b.WriteString("\r\n ")
		line = line[cut:]
		limit = 74 // the leading space counts
	}
	b.WriteString(line)
	b.WriteString("\r\n")
}

// ICalendar renders the ceremonies as an iCalendar file (RFC 5545) that
// officers can import: one all-day event per role and due day, with a
// reminder a week before, listing the repositories, the keys and the
// command to run. stamp is the DTSTAMP (when the calendar was made).
func ICalendar(groups []CeremonyGroup, stamp time.Time) []byte {
	var b bytes.Buffer
	line := func(s string) { icsFold(&b, s) }
	line("BEGIN:VCALENDAR")
	line("VERSION:2.0")
	line("PRODID:-//rootkeeper//rootkeeper calendar//EN")
	line("CALSCALE:GREGORIAN")
	line("METHOD:PUBLISH")
	line("X-WR-CALNAME:rootkeeper offline ceremonies")
	for _, g := range groups {
		names := make([]string, len(g.Entries))
		for i, e := range g.Entries {
			names[i] = e.Repository
		}
		h := sha256.Sum256([]byte(g.Role + "\x00" + g.Day.Format("20060102") + "\x00" + strings.Join(names, "\x00")))
		var summary string
		if len(g.Entries) == 1 {
			summary = fmt.Sprintf("Re-sign %s of %s (expires %s)", g.Role, g.Entries[0].Repository, g.Expires.Format("2006-01-02"))
		} else {
			summary = fmt.Sprintf("Re-sign %s of %d repositories (first expiry %s)", g.Role, len(g.Entries), g.Expires.Format("2006-01-02"))
		}
		var d strings.Builder
		e0 := g.Entries[0]
		fmt.Fprintf(&d, "%s enters its re-signing window (%s) on %s; the first of these expires on %s.\n",
			g.Role, e0.Window, g.Day.Format("2006-01-02"), g.Expires.Format(time.RFC3339))
		fmt.Fprintf(&d, "Needs %d signature(s) by: %s\n", e0.Threshold, strings.Join(e0.Keys, " "))
		if g.Role == RoleRoot {
			d.WriteString("A new root must be signed by a threshold of the current root's keys, even after it has expired.\n")
		}
		fmt.Fprintf(&d, "Run: rootkeeper resign --repos-from LIST --role %s\n", g.Role)
		d.WriteString("Repositories:\n")
		for i, e := range g.Entries {
			if i == 50 {
				fmt.Fprintf(&d, "… and %d more (rootkeeper calendar --json lists them all)\n", len(g.Entries)-50)
				break
			}
			fmt.Fprintf(&d, "- %s (%s v%d, expires %s)\n", e.Repository, e.Role, e.Version, e.Expires.Format("2006-01-02"))
		}
		line("BEGIN:VEVENT")
		line("UID:" + hex.EncodeToString(h[:16]) + "@rootkeeper")
		line("DTSTAMP:" + stamp.UTC().Format("20060102T150405Z"))
		line("DTSTART;VALUE=DATE:" + g.Day.Format("20060102"))
		line("DTEND;VALUE=DATE:" + g.Day.AddDate(0, 0, 1).Format("20060102"))
		line("SUMMARY:" + icsText(summary))
		line("DESCRIPTION:" + icsText(strings.TrimSuffix(d.String(), "\n")))
		line("CATEGORIES:rootkeeper," + icsText(g.Role))
		line("TRANSP:TRANSPARENT")
		line("BEGIN:VALARM")
		line("ACTION:DISPLAY")
		line("TRIGGER:-P7D")
		line("DESCRIPTION:" + icsText(summary))
		line("END:VALARM")
		line("END:VEVENT")
	}
	line("END:VCALENDAR")
	return b.Bytes()
}

// WriteFileAtomic writes data to path atomically (temporary file, fsync,
// rename), for files such as metrics and calendars that others read.
func WriteFileAtomic(path string, data []byte) error { return writeAtomic(path, data) }
