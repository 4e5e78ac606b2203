package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

// The calendar of offline ceremonies: when officers must sit to re-sign
// root, targets and delegated roles (snapshot and timestamp are the
// scheduled job's), as a table, JSON and an iCalendar file (ics.go).
//
// A set of hashed bins is one entry, due when its first bin is; an event
// is one role (or set of bins) of one or more repositories due on the
// same day. An event's UID is derived from what it is about — the role
// and the repositories' identities — not from its day or the versions,
// so that when the ceremony is re-planned (a role re-signed early, a
// window changed) the same event moves, with a higher SEQUENCE.

// CalendarEntry is when an offline role of a repository is next due for
// re-signing by officers.
type CalendarEntry struct {
	Repository string           `json:"repository"`
	Role       string           `json:"role"`    // a role, or a set of hashed bins: "PREFIX-*"
	Version    int64            `json:"version"` // for a set of bins the lowest
	Due        time.Time        `json:"due"`     // when the role (the first bin) enters its re-signing window
	Expires    time.Time        `json:"expires"` // for a set of bins the earliest
	Window     ceremony.Seconds `json:"window_seconds"`
	Threshold  int              `json:"threshold"`
	Keys       []string         `json:"keys,omitempty"` // key URIs from the policy
	State      ceremony.Health  `json:"state"`
	// Bins folds a set of hashed bins (their state at the calendar's
	// time); BinDays says how many of them enter their window on which
	// day, soonest first.
	Bins    *ceremony.BinFold `json:"bin_set,omitempty"`
	BinDays []BinDay          `json:"bin_days,omitempty"`

	identity   string // the repository's (event UIDs)
	maxVersion int64  // the highest version of the role or its bins (SEQUENCE)
	valid      int    // valid signatures (folding)
}

// BinDay is how many bins of a set enter their re-signing window on a day.
type BinDay struct {
	Day  time.Time `json:"day"`
	Bins int       `json:"bins"`
	// First names the first bins of the day (at most 8).
	First []string `json:"first_bins"`
}

// Calendar lists the next offline ceremonies of the repositories whose
// statuses are given, soonest first. Each set of hashed bins is one
// entry, unless unfold asks for one entry per bin.
func Calendar(statuses []RepoStatus, unfold bool) []CalendarEntry {
	var out []CalendarEntry
	for _, s := range statuses {
		if s.Status != nil {
			out = append(out, repoCalendar(s.Repository, s.Status, unfold)...)
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

func repoCalendar(dir string, st *ceremony.StatusReport, unfold bool) []CalendarEntry {
	pol, _ := ceremony.LoadPolicy(dir)
	id := repoIdentity(dir)
	var entries []CalendarEntry
	for _, r := range currentRoles(st) {
		if r.Role == ceremony.RoleSnapshot || r.Role == ceremony.RoleTimestamp {
			continue
		}
		e := CalendarEntry{Repository: dir, Role: r.Role, Version: r.Version, Expires: r.Expires.UTC(),
			Due: r.Expires.Add(-r.Window.D()).UTC(), Window: r.Window, Threshold: r.Threshold, State: r.Health,
			identity: id, maxVersion: r.Version, valid: r.ValidSignatures}
		if pol != nil {
			e.Keys = append(e.Keys, pol.KeyObjects(r.Role)...)
		}
		entries = append(entries, e)
	}
	if unfold {
		return entries
	}
	return foldCalendar(entries, ceremony.BinsOfStatus(st))
}

// calMember is an entry as folding compares it: bins differ when they
// are due on another day.
func calMember(e CalendarEntry) ceremony.BinMember {
	return ceremony.BinMember{Role: e.Role, Version: e.Version, Expires: e.Expires, Health: e.State, Valid: e.valid, Threshold: e.Threshold,
		Detail: "due " + e.Due.Format("2006-01-02")}
}

// foldCalendar makes each set of hashed bins one entry, due when its
// first bin is.
func foldCalendar(entries []CalendarEntry, idx ceremony.BinIndex) []CalendarEntry {
	days := map[string]map[int64]*BinDay{} // prefix → day (Unix) → bins
	for _, e := range entries {
		p, ok := idx[e.Role]
		if !ok {
			continue
		}
		if days[p] == nil {
			days[p] = map[int64]*BinDay{}
		}
		day := e.Due.UTC().Truncate(24 * time.Hour)
		d := days[p][day.Unix()]
		if d == nil {
			d = &BinDay{Day: day}
			days[p][day.Unix()] = d
		}
		d.Bins++
		if len(d.First) < 8 {
			d.First = append(d.First, e.Role)
		}
	}
	var out []CalendarEntry
	for _, row := range ceremony.FoldBins(entries, idx, calMember) {
		e := row.Item
		if f := row.Set; f != nil {
			e.Role, e.Version, e.Expires, e.State, e.Bins = f.Name, f.MinVersion, f.Expires, f.Health, f
			e.maxVersion = f.MaxVersion
			for _, d := range days[f.Prefix] {
				sort.Strings(d.First)
				e.BinDays = append(e.BinDays, *d)
			}
			sort.Slice(e.BinDays, func(i, j int) bool { return e.BinDays[i].Day.Before(e.BinDays[j].Day) })
			for _, x := range entries {
				if idx[x.Role] == f.Prefix && x.Due.Before(e.Due) {
					e.Due = x.Due
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// repoIdentity names a repository for event UIDs: its absolute directory
// and the SHA-256 of its first root (which never changes), so that a
// repository made anew in the same place is another one.
func repoIdentity(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	id := abs
	if data, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json")); err == nil {
		h := sha256.Sum256(data)
		id += "\x00" + hex.EncodeToString(h[:])
	}
	return id
}

// CeremonyGroup is the entries of one role (or set of bins) due on the
// same day: one sitting of the officers, one calendar event.
type CeremonyGroup struct {
	Role    string    `json:"role"`
	Day     time.Time `json:"day"`     // the due day (UTC midnight)
	Due     time.Time `json:"due"`     // the first entry's due time
	Expires time.Time `json:"expires"` // the earliest expiry of the group
	// UID is the event's: derived from the role and the repositories'
	// identities, not from the day or the versions. Sequence grows with
	// the role's version (and, when the calendar file is written again,
	// with every change of the event: ICalendar).
	UID          string          `json:"uid"`
	Sequence     int64           `json:"sequence"`
	Command      string          `json:"command"` // what the officers run
	Repositories []string        `json:"repositories"`
	Entries      []CalendarEntry `json:"-"`
}

// GroupCeremonies groups entries by role and due day, soonest first.
// selector is how the repositories were chosen, as the officer typed it
// ("--repo DIR", "--repos-from LIST", "--repos 'GLOB'"): the command each
// group names chooses them the same way.
func GroupCeremonies(entries []CalendarEntry, selector string) []CeremonyGroup {
	idx := map[string]int{}
	var out []CeremonyGroup
	for _, e := range entries {
		day := e.Due.UTC().Truncate(24 * time.Hour)
		k := e.Role + "\x00" + day.Format("20060102")
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, CeremonyGroup{Role: e.Role, Day: day, Due: e.Due, Expires: e.Expires})
		}
		g := &out[i]
		g.Entries = append(g.Entries, e)
		g.Repositories = append(g.Repositories, e.Repository)
		g.Expires = minTime(g.Expires, e.Expires)
		g.Due = minTime(g.Due, e.Due)
		g.Sequence = max(g.Sequence, e.maxVersion)
	}
	for i := range out {
		g := &out[i]
		ids := make([]string, len(g.Entries))
		for j, e := range g.Entries {
			ids[j] = e.identity
		}
		sort.Strings(ids)
		h := sha256.Sum256([]byte("rootkeeper calendar\x00" + g.Role + "\x00" + strings.Join(ids, "\x00")))
		g.UID = hex.EncodeToString(h[:16]) + "@rootkeeper"
		g.Command = resignCommand(selector, g.Role, g.Entries[0].Bins != nil)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Day.Equal(out[j].Day) {
			return out[i].Day.Before(out[j].Day)
		}
		return out[i].Role < out[j].Role
	})
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// resignCommand is the command that re-signs role in the repositories
// selector chooses. A set of hashed bins has no --role: resign re-signs
// every bin inside its window.
func resignCommand(selector, role string, bins bool) string {
	cmd := "rootkeeper resign " + selector
	if !bins {
		cmd += " --role " + ShellQuote(role)
	}
	return cmd
}

// ShellQuote quotes s for a POSIX shell when it needs it.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+-,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
