package ceremony

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rootkeeper/rootkeeper/roles"
)

var anchorHint = "the signed anchors in metadata/ name the transcript the repository was really signed on: compare " + TranscriptFile + " with a copy or the paper log, and find out who rewrote it"

// checkAnchors checks the anchor in every file of metadata/: the entry
// it names exists and has the hash it says, the entry right after it is
// the one that wrote the file, and a file an anchored entry wrote carries
// one. It then says how far the anchors cover the transcript.
func (c *transcriptCheck) checkAnchors() {
	n := len(c.entries)
	highest := -1
	start := len(c.problems)
	for _, p := range sortedDisk(c.disk) {
		f := c.disk[p]
		w := c.writer(p, f)
		a := f.anchor
		if w == 0 && immutableMeta(p) && c.orphans.unreachable(p) {
			continue // an interrupted run's leftover, never published: checkAccounted warns
		}
		switch {
		case a == nil && w > 0 && c.entries[w-1].Schema > 0:
			c.problem(TranscriptProblem{anchor: a, Check: "anchor", Seq: w, Path: p, Detail: fmt.Sprintf("%s carries no transcript anchor, but entry %d, which wrote it, is in the anchored format", p, w), Hint: anchorHint})
		case a == nil:
		case a.Seq > n:
			c.problem(TranscriptProblem{anchor: a, Check: "anchor", Path: p, Detail: fmt.Sprintf("%s was signed on transcript entry %d, but the transcript has only %d: entries were removed from its end", p, a.Seq, n), Hint: anchorHint})
		case a.Seq > 0 && a.Head != "sha256:"+c.hashes[a.Seq-1]:
			c.problem(TranscriptProblem{anchor: a, Check: "anchor", Seq: a.Seq, Path: p, Detail: fmt.Sprintf("%s was signed on transcript entry %d with head %s, but entry %d now hashes to %s: the transcript was rewritten after this version was signed",
				p, a.Seq, short(strings.TrimPrefix(a.Head, "sha256:")), a.Seq, short(c.hashes[a.Seq-1])), Hint: anchorHint})
		case a.Seq == n:
			c.problem(TranscriptProblem{anchor: a, Check: "anchor", Seq: n, Path: p, Detail: fmt.Sprintf("%s was signed on entry %d, the last one, so entry %d wrote it, but there is no entry %d: the last entry was removed", p, n, n+1, n+1), Hint: anchorHint})
		case w > 0 && w != a.Seq+1 && !c.appliedOn(w, a):
			c.problem(TranscriptProblem{anchor: a, Check: "anchor", Seq: w, Path: p, Detail: fmt.Sprintf("%s was signed on entry %d, so entry %d wrote it, but the transcript says entry %d did: entries were moved or inserted", p, a.Seq, a.Seq+1, w), Hint: anchorHint})
		case w > 0 && c.entries[w-1].Schema == 0:
			c.problem(TranscriptProblem{anchor: a, Check: "anchor", Seq: w, Path: p, Detail: fmt.Sprintf("%s carries an anchor, but entry %d, which wrote it, is in the old format: the entry was rewritten", p, w), Hint: anchorHint})
		}
		if a != nil && a.Seq <= n {
			highest = max(highest, a.Seq)
		}
	}
	// The earliest entry an anchor contradicts first: where the
	// transcript the metadata was signed on and this one part.
	found := c.problems[start:]
	sort.SliceStable(found, func(i, j int) bool { return anchorSeq(found[i]) < anchorSeq(found[j]) })
	c.coverage(highest)
}

// appliedOn reports whether entry w applied a signing bundle made at
// entry a.Seq+1: the bundle's roles were signed on the head before the
// bundle's own entry, and written when it was applied (bundle_seq).
func (c *transcriptCheck) appliedOn(w int, a *roles.Anchor) bool {
	made := a.Seq + 1
	if made >= w || made < 1 {
		return false
	}
	seq, ok := c.entries[w-1].Details["bundle_seq"].(float64)
	return ok && int(seq) == made && c.entries[made-1].Operation == OpBundle &&
		c.entries[made-1].Details["bundle"] == c.entries[w-1].Details["bundle"]
}

// coverage records how far the anchors reach: entries up to the highest
// anchor are vouched for by signatures; the entry after it wrote that
// metadata; anything later is not covered yet.
func (c *transcriptCheck) coverage(highest int) {
	n := len(c.entries)
	c.rep.AnchoredThrough = max(highest, 0)
	from := highest + 1
	if highest < 0 {
		from = 1
	}
	for s := from; s <= n; s++ {
		c.rep.Unanchored = append(c.rep.Unanchored, s)
	}
	switch {
	case n == 0:
	case highest < 0:
		c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("no metadata carries a transcript anchor yet (%s written by an older rootkeeper): the chain alone vouches for them until the next change anchors them all", plural(c.rep.Legacy, "1 entry", "entries")))
	case n > highest+1:
		c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("entries %d to %d are not covered by a signature yet: the next change that signs metadata anchors them", highest+1, n))
	}
}

// anchorSeq is the entry an anchor problem is about, for its order.
func anchorSeq(p TranscriptProblem) int {
	if p.anchor != nil {
		return p.anchor.Seq
	}
	return p.Seq
}

func sortedDisk(m map[string]diskFile) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var filesHint = "rootkeeper writes every file through the transcript: find out who changed the repository; rootkeeper verify --repo DIR says whether clients would still accept it"

// checkWritten checks that the files the entries wrote are there: in
// metadata/ each versioned file as written and each mutable one as its
// last writer left it; keys/ and targets/ files of anchored entries
// present (keys/ as written). rootkeeper.yaml is the officers' to edit.
func (c *transcriptCheck) checkWritten() {
	paths := make([]string, 0, len(c.writes))
	for p := range c.writes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		ws := c.writes[p]
		last := ws[len(ws)-1]
		if c.removed[p] > last.seq {
			continue
		}
		switch {
		case strings.HasPrefix(p, roles.MetadataDir+"/"):
			c.checkMetadataWritten(p, ws)
		case c.entries[last.seq-1].Schema == 0:
		case strings.HasPrefix(p, "keys/") || strings.HasPrefix(p, roles.TargetsDir+"/"):
			c.checkOtherWritten(p, last)
		}
	}
}

func (c *transcriptCheck) checkMetadataWritten(p string, ws []fileWrite) {
	last := ws[len(ws)-1]
	f, ok := c.disk[p]
	switch {
	case !ok:
		c.problem(TranscriptProblem{Check: "files", Seq: last.seq, Path: p, Detail: fmt.Sprintf("%s, written by entry %d, is missing", p, last.seq), Hint: filesHint})
	case immutableMeta(p) && c.writer(p, f) == 0:
		c.problem(TranscriptProblem{Check: "files", Seq: last.seq, Path: p, Detail: fmt.Sprintf("%s is not the file entry %d wrote (sha256 %s, now %s): it was replaced after it was written", p, last.seq, short(last.hash), short(f.hash)), Hint: filesHint})
	case !immutableMeta(p) && !last.matches(f):
		w := c.writer(p, f)
		what := "no entry wrote these bytes"
		if w > 0 {
			what = fmt.Sprintf("these bytes are entry %d's, an older version", w)
		}
		c.problem(TranscriptProblem{Check: "files", Seq: last.seq, Path: p, Detail: fmt.Sprintf("%s is not the one the last entry to write it (entry %d) recorded (sha256 %s, now %s): %s", p, last.seq, short(last.hash), short(f.hash), what), Hint: filesHint})
	}
}

func (c *transcriptCheck) checkOtherWritten(p string, last fileWrite) {
	data, err := os.ReadFile(filepath.Join(c.dir, filepath.FromSlash(p)))
	switch {
	case err != nil:
		c.problem(TranscriptProblem{Check: "files", Seq: last.seq, Path: p, Detail: fmt.Sprintf("%s, written by entry %d, is missing", p, last.seq), Hint: filesHint})
	case strings.HasPrefix(p, "keys/") && sha256hex(data) != last.hash:
		c.problem(TranscriptProblem{Check: "files", Seq: last.seq, Path: p, Detail: fmt.Sprintf("%s is not the key record entry %d wrote (sha256 %s, now %s)", p, last.seq, short(last.hash), short(sha256hex(data))), Hint: filesHint})
	}
}

// checkAccounted checks that every file of metadata/ was written by an
// entry with the same bytes. A versioned file no published timestamp
// reaches, left by an interrupted run of an older rootkeeper, is a
// warning: rootkeeper repair removes it.
func (c *transcriptCheck) checkAccounted() {
	for _, p := range sortedDisk(c.disk) {
		f := c.disk[p]
		if c.writer(p, f) > 0 {
			continue
		}
		if _, written := c.writes[p]; written && !immutableMeta(p) {
			continue // checkWritten named it
		}
		if _, written := c.writes[p]; written {
			continue // a versioned file replaced: checkWritten named it
		}
		if immutableMeta(p) && c.orphans.unreachable(p) {
			c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("%s is not in the transcript, but no published timestamp reaches it: an interrupted run of an older rootkeeper left it (rootkeeper repair removes it)", p))
			continue
		}
		what := "written outside rootkeeper, or its entry was removed"
		if f.err != nil {
			what = "not metadata rootkeeper can read (" + excerpt(f.err.Error(), 80) + ")"
		}
		c.problem(TranscriptProblem{Check: "accounted", Path: p, Detail: fmt.Sprintf("%s (sha256 %s) is not accounted for by any transcript entry: %s", p, short(f.hash), what), Hint: filesHint})
	}
}

// checkTranscript is what every change checks before any device is
// opened (lockAndLoad): the transcript verifies. A dry run on a
// repository with a pending journal (which it does not finish) checks
// only the chain, as readTranscript did.
func checkTranscript(dir string, write bool) error {
	if !write && pendingJournal(dir) {
		return nil
	}
	rep, err := VerifyTranscript(dir)
	if err != nil {
		return err
	}
	if !rep.OK {
		return &TranscriptError{Dir: dir, Problem: rep.Problems[0]}
	}
	return nil
}
