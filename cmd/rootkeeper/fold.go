package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

// Hashed bins for people: each set of bins is one line (ceremony/fold.go),
// with the bins that differ from the rest named after the table. --bins
// lists every bin instead; --json always does.

// namedDiffer is how many differing bins a line names.
const namedDiffer = 5

// setLabel names a set of bins: "bins-* (1024 bins)".
func setLabel(f *ceremony.BinFold) string { return fmt.Sprintf("%s (%d bins)", f.Name, f.Bins) }

// versionText is a set's version, or its range: "1", "1–3".
func versionText(f *ceremony.BinFold) string {
	if f.MinVersion == f.MaxVersion {
		return fmt.Sprint(f.MinVersion)
	}
	return fmt.Sprintf("%d–%d", f.MinVersion, f.MaxVersion)
}

// stateText is a set's worst state with how many bins are in it:
// "healthy", "due (3 of 1024)", "invalid (1 of 1024), due (2)".
func stateText(f *ceremony.BinFold) string {
	switch {
	case f.Invalid > 0 && f.Due > 0:
		return fmt.Sprintf("invalid (%d of %d), due (%d)", f.Invalid, f.Bins, f.Due)
	case f.Invalid > 0:
		return fmt.Sprintf("invalid (%d of %d)", f.Invalid, f.Bins)
	case f.Due > 0:
		return fmt.Sprintf("due (%d of %d)", f.Due, f.Bins)
	}
	return f.Health.String()
}

// memberDiff says how a bin differs from its set's typical bin.
func memberDiff(m, typical ceremony.BinMember) string {
	var parts []string
	if m.Version != typical.Version {
		parts = append(parts, fmt.Sprintf("v%d", m.Version))
	}
	if !m.Expires.Equal(typical.Expires) {
		layout := "2006-01-02 15:04"
		if m.Expires.UTC().Format(layout) == typical.Expires.UTC().Format(layout) {
			layout += ":05" // seconds apart: show them
		}
		parts = append(parts, "expires "+m.Expires.UTC().Format(layout))
	}
	if m.Health != typical.Health {
		parts = append(parts, m.Health.String())
	}
	if m.Valid != typical.Valid {
		parts = append(parts, fmt.Sprintf("%d/%d signatures", m.Valid, m.Threshold))
	}
	if m.Detail != typical.Detail && m.Detail != "" {
		parts = append(parts, m.Detail)
	}
	return m.Role + " (" + strings.Join(parts, ", ") + ")"
}

// differLine says which bins of a set differ from the rest, or "" when
// none does.
func differLine(f *ceremony.BinFold) string {
	if f.DifferCount == 0 {
		return ""
	}
	t := f.Typical
	typical := fmt.Sprintf("v%d, expires %s, %s", t.Version, t.Expires.UTC().Format("2006-01-02 15:04"), t.Health)
	if t.Detail != "" {
		typical += ", " + t.Detail
	}
	var names []string
	for i, m := range f.Differ {
		if i == namedDiffer {
			break
		}
		names = append(names, memberDiff(m, t))
	}
	line := fmt.Sprintf("%s: %d of %d bins are %s; %d %s: %s", f.Name, f.Bins-f.DifferCount, f.Bins, typical,
		f.DifferCount, plural(f.DifferCount, "differs", "differ"), strings.Join(names, ", "))
	if f.DifferCount > len(names) {
		line += fmt.Sprintf(", … %d more (--bins lists every bin)", f.DifferCount-len(names))
	}
	return line
}

// binsNote lists the bins a folded message is about: " (1024 bins:
// bins-000, bins-001, bins-002 … bins-3ff)", or when the messages differ
// (another time each) " (and 1023 more bins of bins-* alike: bins-001, …)".
func binsNote[T any](m ceremony.FoldedText[T]) string {
	bins := m.Bins
	if len(bins) < 2 {
		return ""
	}
	head := fmt.Sprintf(" (%d bins: ", len(bins))
	if !m.Same {
		bins = bins[1:]
		head = fmt.Sprintf(" (and %d more %s of %s alike: ", len(bins), plural(len(bins), "bin", "bins"), m.Set)
	}
	if len(bins) <= 4 {
		return head + strings.Join(bins, ", ") + ")"
	}
	return head + strings.Join(bins[:3], ", ") + " … " + bins[len(bins)-1] + ")"
}

// foldNames folds the bins among role names: "targets", "bins-* (1024
// bins)", "snapshot".
func foldNames(names []string, idx ceremony.BinIndex) []string {
	rows := ceremony.FoldBins(names, idx, func(n string) ceremony.BinMember { return ceremony.BinMember{Role: n} })
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Item
		if r.Set != nil {
			out[i] = setLabel(r.Set)
		}
	}
	return out
}

// leftOf is how long is left at at before t, for people.
func leftOf(t, at time.Time) string { return ceremony.Seconds(t.Sub(at)).Remaining() }
