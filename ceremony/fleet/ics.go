package fleet

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

// The calendar as an iCalendar file (RFC 5545) officers import.
//
// A calendar client that imported an event updates it when it sees the
// same UID with a higher SEQUENCE, and otherwise keeps what it has. The
// UID says what the event is about (GroupCeremonies); SEQUENCE is at
// least the highest version of the role, which every ceremony raises, and
// when the file is written again in place, each event whose date or text
// changed gets the previous file's SEQUENCE plus one (the file is the
// stored counter: X-ROOTKEEPER-DIGEST records what each event said). An
// event of the previous file that no longer exists (its repositories now
// fall due on different days) is written once more as cancelled, with a
// higher SEQUENCE, so that it does not linger in the calendars.

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

// icsUnfold splits an iCalendar file into its content lines.
func icsUnfold(data []byte) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") {
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && len(out) > 0 {
			out[len(out)-1] += l[1:]
			continue
		}
		out = append(out, l)
	}
	return out
}

// icsEvent is an event of a previous calendar file.
type icsEvent struct {
	uid, digest string
	sequence    int64
	cancelled   bool
	lines       []string // its content lines, VALARM left out
}

// icsProdID names rootkeeper's calendar files.
const icsProdID = "PRODID:-//rootkeeper//rootkeeper calendar//EN"

// previousEvents reads the events of a calendar file rootkeeper wrote; any
// other file gives none.
func previousEvents(data []byte) (order []string, events map[string]*icsEvent) {
	events = map[string]*icsEvent{}
	if !bytes.Contains(data, []byte("\n"+icsProdID+"\r\n")) {
		return nil, events
	}
	var cur *icsEvent
	alarm := false
	for _, l := range icsUnfold(data) {
		name, value, _ := strings.Cut(l, ":")
		switch {
		case l == "BEGIN:VEVENT":
			cur = &icsEvent{}
			continue
		case l == "END:VEVENT" && cur != nil:
			if cur.uid != "" && events[cur.uid] == nil {
				events[cur.uid] = cur
				order = append(order, cur.uid)
			}
			cur = nil
			continue
		case cur == nil:
			continue
		case l == "BEGIN:VALARM" || l == "END:VALARM":
			alarm = l == "BEGIN:VALARM"
			continue
		case alarm:
			continue
		}
		switch name {
		case "UID":
			cur.uid = value
		case "SEQUENCE":
			cur.sequence, _ = strconv.ParseInt(value, 10, 64)
		case "X-ROOTKEEPER-DIGEST":
			cur.digest = value
		case "STATUS":
			cur.cancelled = value == "CANCELLED"
		}
		cur.lines = append(cur.lines, l)
	}
	return order, events
}

// ICalendar renders the ceremonies as an iCalendar file (RFC 5545) that
// officers can import: one all-day event per group, with a reminder a
// week before, naming the repositories, the keys, and the command to run.
// stamp is the DTSTAMP (when the calendar was made); previous is the file
// this one replaces (nil if none). It sets each group's Sequence to the
// SEQUENCE written.
func ICalendar(groups []CeremonyGroup, stamp time.Time, previous []byte) []byte {
	order, prev := previousEvents(previous)
	var b bytes.Buffer
	line := func(s string) { icsFold(&b, s) }
	for _, s := range []string{"BEGIN:VCALENDAR", "VERSION:2.0", icsProdID,
		"CALSCALE:GREGORIAN", "METHOD:PUBLISH", "X-WR-CALNAME:rootkeeper offline ceremonies"} {
		line(s)
	}
	seen := map[string]bool{}
	dtstamp := "DTSTAMP:" + stamp.UTC().Format("20060102T150405Z")
	for i := range groups {
		g := &groups[i]
		summary := eventSummary(g)
		body := []string{
			"DTSTART;VALUE=DATE:" + g.Day.Format("20060102"),
			"DTEND;VALUE=DATE:" + g.Day.AddDate(0, 0, 1).Format("20060102"),
			"SUMMARY:" + icsText(summary),
			"DESCRIPTION:" + icsText(eventDescription(g)),
			"CATEGORIES:rootkeeper," + icsText(g.Role),
		}
		h := sha256.Sum256([]byte(strings.Join(body, "\n")))
		digest := hex.EncodeToString(h[:8])
		if p := prev[g.UID]; p != nil {
			seq := p.sequence
			if p.digest != digest || p.cancelled {
				seq++
			}
			g.Sequence = max(g.Sequence, seq)
		}
		seen[g.UID] = true
		line("BEGIN:VEVENT")
		line("UID:" + g.UID)
		line(dtstamp)
		line("SEQUENCE:" + strconv.FormatInt(g.Sequence, 10))
		for _, l := range body {
			line(l)
		}
		line("TRANSP:TRANSPARENT")
		line("X-ROOTKEEPER-DIGEST:" + digest)
		for _, l := range []string{"BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-P7D", "DESCRIPTION:" + icsText(summary), "END:VALARM"} {
			line(l)
		}
		line("END:VEVENT")
	}
	for _, uid := range order {
		if p := prev[uid]; !seen[uid] && !p.cancelled {
			cancelEvent(line, p, dtstamp)
		}
	}
	line("END:VCALENDAR")
	return b.Bytes()
}

// cancelEvent writes an event of the previous file as cancelled.
func cancelEvent(line func(string), p *icsEvent, dtstamp string) {
	line("BEGIN:VEVENT")
	for _, l := range p.lines {
		switch name, _, _ := strings.Cut(l, ":"); {
		case name == "DTSTAMP" || name == "STATUS":
		case name == "SEQUENCE":
			line("SEQUENCE:" + strconv.FormatInt(p.sequence+1, 10))
		default:
			line(l)
		}
		if strings.HasPrefix(l, "UID:") {
			line(dtstamp)
		}
	}
	line("STATUS:CANCELLED")
	line("END:VEVENT")
}

func eventSummary(g *CeremonyGroup) string {
	what, e0 := g.Role, g.Entries[0]
	if e0.Bins != nil {
		what = fmt.Sprintf("%s (%d hashed bins)", g.Role, e0.Bins.Bins)
	}
	if len(g.Entries) == 1 {
		return fmt.Sprintf("Re-sign %s of %s (expires %s)", what, e0.Repository, g.Expires.Format("2006-01-02"))
	}
	return fmt.Sprintf("Re-sign %s of %d repositories (first expiry %s)", what, len(g.Entries), g.Expires.Format("2006-01-02"))
}

func eventDescription(g *CeremonyGroup) string {
	var d strings.Builder
	e0 := g.Entries[0]
	fmt.Fprintf(&d, "%s enters its re-signing window (%s) on %s; the first of these expires on %s.\n",
		g.Role, e0.Window, g.Due.Format(time.RFC3339), g.Expires.Format(time.RFC3339))
	fmt.Fprintf(&d, "Needs %d signature(s) by: %s\n", e0.Threshold, strings.Join(e0.Keys, " "))
	if g.Role == ceremony.RoleRoot {
		d.WriteString("A new root must be signed by a threshold of the current root's keys, even after it has expired.\n")
	}
	if e0.Bins != nil {
		fmt.Fprintf(&d, "Run, from %s on: %s\n(it re-signs every hashed bin inside its window)\n", g.Due.Format(time.RFC3339), g.Command)
	} else {
		fmt.Fprintf(&d, "Run: %s\n", g.Command)
	}
	d.WriteString("Repositories:\n")
	for i, e := range g.Entries {
		if i == 50 {
			fmt.Fprintf(&d, "… and %d more (rootkeeper calendar --json lists them all)\n", len(g.Entries)-50)
			break
		}
		fmt.Fprintf(&d, "- %s (%s v%d, expires %s)\n", e.Repository, e.Role, e.Version, e.Expires.Format("2006-01-02"))
		for _, bd := range e.BinDays {
			noun := "bins"
			if bd.Bins == 1 {
				noun = "bin"
			}
			fmt.Fprintf(&d, "  %d %s due %s: %s", bd.Bins, noun, bd.Day.Format("2006-01-02"), strings.Join(bd.First, ", "))
			if bd.Bins > len(bd.First) {
				d.WriteString(", …")
			}
			d.WriteString("\n")
		}
	}
	return strings.TrimSuffix(d.String(), "\n")
}
