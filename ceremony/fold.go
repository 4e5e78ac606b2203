package ceremony

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// Hashed bins at human scale. A repository with 1,024 hashed bins has
// 1,024 roles that as a rule share their keys, version and expiry. Status,
// verify, resign, the calendar and the metrics show each set of bins as
// one role with what matters — how many bins, how many are due or
// invalid, the earliest expiry, the worst state — and name the bins that
// differ from the rest. The per-bin detail stays in --json (and --bins).

// BinIndex says which roles are hashed bins: bin role name → the bins'
// name prefix (TAP 15 succinct roles: PREFIX-0…).
type BinIndex map[string]string

// SetName is how every output names a set of hashed bins: "PREFIX-*".
func SetName(prefix string) string { return prefix + "-*" }

// Set returns the name of the set role belongs to ("bins-*"), or "" when
// role is no hashed bin.
func (x BinIndex) Set(role string) string {
	if p, ok := x[role]; ok {
		return SetName(p)
	}
	return ""
}

// BinsOfReport indexes the hashed bins of a verification report.
func BinsOfReport(rep *roles.Report) BinIndex {
	x := BinIndex{}
	for _, r := range rep.Roles {
		if r.Bins != "" {
			x[r.Role] = r.Bins
		}
	}
	return x
}

// BinsOfStatus indexes the hashed bins of a status report.
func BinsOfStatus(st *StatusReport) BinIndex {
	x := BinIndex{}
	for _, r := range st.Roles {
		if r.Bins != "" {
			x[r.Role] = r.Bins
		}
	}
	return x
}

// BinsOfResign indexes the hashed bins a re-signing run found due (every
// bin it re-signed, or that waits, is among them).
func BinsOfResign(r *ResignResult) BinIndex {
	x := BinIndex{}
	for _, d := range r.Due {
		if d.Bins != "" {
			x[d.Role] = d.Bins
		}
	}
	return x
}

// binIndexOf indexes every hashed bin a repository delegates to.
func binIndexOf(repo *roles.Repo) BinIndex {
	x := BinIndex{}
	add := func(md *metadata.Metadata[metadata.TargetsType]) {
		if md == nil || md.Signed.Delegations == nil || md.Signed.Delegations.SuccinctRoles == nil {
			return
		}
		sr := md.Signed.Delegations.SuccinctRoles
		for _, b := range sr.GetRoles() {
			x[b] = sr.NamePrefix
		}
	}
	add(repo.Targets)
	for _, md := range repo.Delegated {
		add(md)
	}
	return x
}

// BinMember is one bin as folding compares it.
type BinMember struct {
	Role      string    `json:"role"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Health    Health    `json:"state"`
	Valid     int       `json:"valid_signatures"`
	Threshold int       `json:"threshold"`
	// Detail is what else sets a bin apart: its problem (status, verify)
	// or why it is due (resign).
	Detail string `json:"detail,omitempty"`
}

// key is what bins that do not differ share: m without its name, also
// where its detail names it ("bins-0: expired at …").
func (m BinMember) key() BinMember {
	if m.Role != "" {
		m.Detail = strings.ReplaceAll(m.Detail, m.Role, "\x00")
	}
	m.Role, m.Expires = "", m.Expires.Truncate(time.Second).UTC()
	return m
}

// worse reports whether m needs attention before o: a worse state, then
// an earlier expiry, then the name.
func (m BinMember) worse(o BinMember) bool {
	if m.Health != o.Health {
		return m.Health > o.Health
	}
	if !m.Expires.Equal(o.Expires) {
		return m.Expires.Before(o.Expires)
	}
	return m.Role < o.Role
}

// MaxDiffer is how many of the bins that differ from the rest a BinFold
// names.
const MaxDiffer = 16

// BinFold is a set of hashed bins shown as one role.
type BinFold struct {
	Name       string    `json:"name"`   // "bins-*"
	Prefix     string    `json:"prefix"` // "bins"
	Bins       int       `json:"bins"`   // how many bins are folded
	First      string    `json:"first_bin"`
	Last       string    `json:"last_bin"`
	MinVersion int64     `json:"min_version"`
	MaxVersion int64     `json:"max_version"`
	Expires    time.Time `json:"earliest_expiry"`
	Earliest   string    `json:"earliest_bin"` // the worst bin: the first to expire of those in the worst state
	Valid      int       `json:"min_valid_signatures"`
	Threshold  int       `json:"threshold"`
	Due        int       `json:"due"`     // bins inside their re-signing window
	Invalid    int       `json:"invalid"` // bins clients refuse
	Health     Health    `json:"state"`   // the worst bin's
	// Typical is what most bins share (its role is the set's name);
	// Differ names the bins that differ from it, worst first, at most
	// MaxDiffer of them; DifferCount counts them all.
	Typical     BinMember   `json:"typical"`
	Differ      []BinMember `json:"differ,omitempty"`
	DifferCount int         `json:"differ_count"`
}

// Folded is one row of a folded listing: a role that is no hashed bin
// (Set nil), or a set of bins with Item its worst bin.
type Folded[T any] struct {
	Item T
	Set  *BinFold
}

// FoldBins folds the hashed bins among items, one row per set at the
// place of its first bin, in the order of items otherwise. member says
// what a row is about. A set with a single bin among items stays that
// bin: its name says more than a fold of one.
func FoldBins[T any](items []T, idx BinIndex, member func(T) BinMember) []Folded[T] {
	var out []Folded[T]
	row := map[string]int{} // prefix → index in out
	worst := map[string]BinMember{}
	members := map[string][]BinMember{}
	for _, it := range items {
		m := member(it)
		p, ok := idx[m.Role]
		if !ok {
			out = append(out, Folded[T]{Item: it})
			continue
		}
		members[p] = append(members[p], m)
		i, seen := row[p]
		if !seen {
			row[p], worst[p] = len(out), m
			out = append(out, Folded[T]{Item: it, Set: &BinFold{Name: SetName(p), Prefix: p}})
			continue
		}
		if m.worse(worst[p]) {
			out[i].Item, worst[p] = it, m
		}
	}
	for p, i := range row {
		if len(members[p]) == 1 {
			out[i].Set = nil
			continue
		}
		out[i].Set.summarize(members[p])
	}
	return out
}

// FoldSets returns the sets of bins among items (FoldBins without the
// other rows).
func FoldSets[T any](items []T, idx BinIndex, member func(T) BinMember) []*BinFold {
	var out []*BinFold
	for _, r := range FoldBins(items, idx, member) {
		if r.Set != nil {
			out = append(out, r.Set)
		}
	}
	return out
}

func (f *BinFold) summarize(ms []BinMember) {
	f.Bins = len(ms)
	counts := map[BinMember]int{}
	var mode BinMember
	for i, m := range ms {
		if i == 0 || m.Role < f.First {
			f.First = m.Role
		}
		if i == 0 || m.Role > f.Last {
			f.Last = m.Role
		}
		if i == 0 || m.worse(BinMember{Role: f.Earliest, Health: f.Health, Expires: f.Expires}) {
			f.Earliest, f.Health, f.Expires = m.Role, m.Health, m.Expires
		}
		if i == 0 || m.Version < f.MinVersion {
			f.MinVersion = m.Version
		}
		f.MaxVersion = max(f.MaxVersion, m.Version)
		if i == 0 || m.Valid < f.Valid {
			f.Valid = m.Valid
		}
		f.Threshold = max(f.Threshold, m.Threshold)
		switch m.Health {
		case Due:
			f.Due++
		case Invalid:
			f.Invalid++
		}
		k := m.key()
		counts[k]++
		if counts[k] > counts[mode] || (counts[k] == counts[mode] && k.worse(mode)) {
			mode = k
		}
	}
	// An earlier expiry than the earliest of the worst state does not
	// make the set expire earlier: report the earliest of all.
	for _, m := range ms {
		if m.Expires.Before(f.Expires) {
			f.Expires = m.Expires
		}
	}
	f.Typical = mode
	f.Typical.Role, f.Typical.Detail = f.Name, strings.ReplaceAll(mode.Detail, "\x00", f.Name)
	for _, m := range ms {
		if m.key() != mode {
			f.Differ = append(f.Differ, m)
		}
	}
	sort.Slice(f.Differ, func(i, j int) bool { return f.Differ[i].worse(f.Differ[j]) })
	f.DifferCount = len(f.Differ)
	if len(f.Differ) > MaxDiffer {
		f.Differ = f.Differ[:MaxDiffer]
	}
}

// FoldedText is a message about one role, or messages alike about many
// bins of one set.
type FoldedText[T any] struct {
	Item T      // the first item of the group
	Text string // the first item's message; when Same, with its bin's name replaced by the set's ("bins-*")
	// Bins are the bins the messages are about (nil for a role that is no
	// bin); Same says every message said the same of its bin.
	Bins []string
	Same bool
	Set  string // the set's name, "bins-*"
}

// FoldMessages folds messages about the bins of one set that are alike:
// of the same kind (kind, e.g. a problem's rule; nil: the same text but
// for the bin's name). "bins-000: expired …" said of 1,024 bins is one
// message, with the bins listed. role names the role an item is about,
// text its message.
func FoldMessages[T any](items []T, idx BinIndex, role, text, kind func(T) string) []FoldedText[T] {
	var out []FoldedText[T]
	group := map[string]int{}
	for _, it := range items {
		r, t := role(it), text(it)
		p, ok := idx[r]
		if !ok {
			out = append(out, FoldedText[T]{Item: it, Text: t})
			continue
		}
		folded := strings.ReplaceAll(t, r, SetName(p))
		k := folded
		if kind != nil {
			k = kind(it)
		}
		k = p + "\x00" + k
		i, seen := group[k]
		if !seen {
			group[k] = len(out)
			out = append(out, FoldedText[T]{Item: it, Text: t, Bins: []string{r}, Same: true, Set: SetName(p)})
			continue
		}
		g := &out[i]
		if g.Same && len(g.Bins) == 1 {
			g.Text = strings.ReplaceAll(g.Text, g.Bins[0], SetName(p))
		}
		if g.Same && folded != g.Text {
			g.Same, g.Text = false, text(g.Item)
		}
		g.Bins = append(g.Bins, r)
	}
	return out
}

// binProgress folds progress lines that differ only in the bin they
// name: the first line of such a run is said at once (progress shows
// while it happens), the rest of the run in one line when another line
// comes or at flush: "… the same for 1023 more bins of bins-* (bins-001 …
// bins-3ff)".
type binProgress struct {
	say         func(string)
	idx         BinIndex
	run         string // the current run's line with its bin replaced by the set's name
	set         string
	first, last string // the second and last bins of the run
	n           int    // lines of the run not said
}

func newBinProgress(say func(string), idx BinIndex) *binProgress {
	return &binProgress{say: say, idx: idx}
}

// line says msg, or counts it into the current run.
func (p *binProgress) line(msg string) {
	bin := ""
	if len(p.idx) > 0 {
		for _, w := range strings.FieldsFunc(msg, func(r rune) bool { return r == ' ' || r == ':' || r == '(' || r == ')' || r == ',' }) {
			if _, ok := p.idx[w]; ok {
				bin = w
				break
			}
		}
	}
	if bin == "" {
		p.flush()
		p.say(msg)
		return
	}
	set := SetName(p.idx[bin])
	folded := strings.ReplaceAll(msg, bin, set)
	if folded == p.run {
		if p.n == 0 {
			p.first = bin
		}
		p.n++
		p.last = bin
		return
	}
	p.flush()
	p.run, p.set = folded, set
	p.say(msg)
}

// flush says how many lines the current run left out.
func (p *binProgress) flush() {
	if p.n > 0 {
		what := p.first
		if p.n > 1 {
			what += " … " + p.last
		}
		noun := "bins"
		if p.n == 1 {
			noun = "bin"
		}
		p.say(fmt.Sprintf("… the same for %d more %s of %s (%s)", p.n, noun, p.set, what))
	}
	p.run, p.n = "", 0
}
