package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

func (a *app) transcriptCommand() *cobra.Command {
	cmd := groupCommand(&cobra.Command{
		Use:   "transcript",
		Short: "Check and show the repository's ceremony transcript",
		Long: `The ceremony transcript (transcript.jsonl) records every change: who made it,
when, with which inputs, every signature with its device and evidence, every
file written. Each metadata version carries the hash of the transcript's head
in its signed part, so the ceremony's own signatures vouch for the chain
(docs/transcript.md).`,
	})
	cmd.AddCommand(a.transcriptVerifyCommand(), a.transcriptShowCommand())
	return cmd
}

func (a *app) transcriptVerifyCommand() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify --repo DIR [--json]",
		Short: "Check the transcript against the signed metadata, offline",
		Long: `Check the ceremony transcript with no device: the hash chain and time order of
its entries; that it belongs to this repository (the hash of metadata/1.root.json);
that the anchor signed into every metadata file names an entry of this chain
with the hash it had when the file was signed, and the entry after it wrote the
file; that every file of metadata/ is accounted for by the entry that wrote it,
and every file an entry wrote is still there unless a later entry replaced or
removed it. Every command that changes the repository runs the same check first.

Write down the head it prints on paper at the end of each ceremony.

Exit status: 0 the transcript verifies, 1 it does not (the first problem is
named) or the repository could not be read.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			rep, err := ceremony.VerifyTranscript(dir)
			if err != nil {
				return err
			}
			if asJSON {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				a.printTranscriptVerify(rep)
			}
			for _, w := range rep.Warnings {
				a.ui.Warn(w)
			}
			if !rep.OK {
				p := rep.Problems[0]
				a.ui.printf("error: %s", p.Detail)
				if p.Hint != "" {
					a.ui.printf("hint: %s", p.Hint)
				}
				if n := len(rep.Problems) - 1; n > 0 {
					a.ui.printf("(and %d more %s: --json lists every one)", n, plural(n, "problem", "problems"))
				}
				return exitStatus{exitError}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) printTranscriptVerify(rep *ceremony.TranscriptReport) {
	w := a.stdout
	fmt.Fprintf(w, "%s:\n", rep.Repository)
	if !rep.OK && (rep.Problems[0].Check == "chain" || rep.Problems[0].Check == "journal") {
		return // nothing after the break can be read as the transcript
	}
	legacy := ""
	if rep.Legacy > 0 {
		legacy = fmt.Sprintf(" (%d written before anchoring)", rep.Legacy)
	}
	fmt.Fprintf(w, "  entries:          %d%s\n", rep.Entries, legacy)
	if rep.Head != "" {
		fmt.Fprintf(w, "  head:             entry %d %s\n", rep.Entries, rep.Head)
	}
	if rep.Identity != "" {
		fmt.Fprintf(w, "  repository:       %s (metadata/1.root.json)\n", rep.Identity)
	}
	switch {
	case rep.AnchoredThrough > 0:
		fmt.Fprintf(w, "  anchored:         entries 1 to %d, by the signatures on the metadata entry %d wrote\n", rep.AnchoredThrough, rep.AnchoredThrough+1)
	case rep.Entries > 0 && len(rep.Unanchored) < rep.Entries:
		fmt.Fprintf(w, "  anchored:         the first entry's metadata carries the empty transcript\n")
	}
	if len(rep.Unanchored) > 0 {
		fmt.Fprintf(w, "  not yet anchored: %s (covered by the next change's signatures and by the paper log)\n", seqList(rep.Unanchored))
	}
	fmt.Fprintf(w, "  metadata files:   %d\n", rep.MetadataFiles)
	if rep.OK {
		fmt.Fprintln(w, "OK: the transcript verifies")
	}
}

// seqList writes entry numbers as "entry 7" or "entries 7 to 9".
func seqList(seqs []int) string {
	if len(seqs) == 1 {
		return fmt.Sprintf("entry %d", seqs[0])
	}
	return fmt.Sprintf("entries %d to %d", seqs[0], seqs[len(seqs)-1])
}

func (a *app) transcriptShowCommand() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show --repo DIR [--json]",
		Short: "Show the transcript's entries",
		Long: `Show every entry of the ceremony transcript: when, what and by whom, the inputs,
the anchor its metadata carries, every signature on every metadata file it wrote
(key id, device, serial, evidence digest), the files written and removed, and
the hash of the entry. The chain is checked; transcript verify checks the rest.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			v, err := ceremony.ShowTranscript(dir)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(v)
			}
			printTranscript(a.stdout, v)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the transcript as JSON")
	return cmd
}

func printTranscript(w io.Writer, v *ceremony.TranscriptView) {
	fmt.Fprintf(w, "%s: %d %s\n", v.Repository, len(v.Entries), plural(len(v.Entries), "entry", "entries"))
	for _, e := range v.Entries {
		by := e.Operator
		if e.Host != "" {
			by += "@" + e.Host
		}
		fmt.Fprintf(w, "\nentry %d  %s  %s  by %s\n", e.Seq, e.Time.Format("2006-01-02T15:04:05Z"), e.Operation, by)
		if e.Version != "" {
			fmt.Fprintf(w, "  rootkeeper: %s\n", e.Version)
		}
		if e.Schema == 0 {
			fmt.Fprintln(w, "  format:     written before anchoring (legacy)")
		}
		if len(e.Details) > 0 {
			fmt.Fprintf(w, "  inputs:     %s\n", detailsText(e.Details))
		}
		if e.Anchor != nil {
			fmt.Fprintf(w, "  anchor:     %s\n", e.Anchor)
		}
		for _, s := range e.Signed {
			fmt.Fprintf(w, "  signed:     %s (%s v%d, payload %s), %d %s\n", s.Path, s.Role, s.Version, s.Payload, len(s.Signatures), plural(len(s.Signatures), "signature", "signatures"))
			for _, sig := range s.Signatures {
				fmt.Fprintf(w, "    %s\n", signatureText(sig))
			}
		}
		fmt.Fprintf(w, "  files:      %d written, %d removed\n", len(e.Files), len(e.Removed))
		fmt.Fprintf(w, "  hash:       %s\n", e.Hash)
	}
}

func signatureText(s ceremony.SignatureRecord) string {
	parts := []string{s.KeyID[:min(12, len(s.KeyID))]}
	if s.Device == "" {
		parts = append(parts, "no key record")
	} else {
		parts = append(parts, s.Device)
	}
	if s.Serial != "" {
		parts = append(parts, "serial "+s.Serial)
	}
	if s.Evidence != "" {
		parts = append(parts, "evidence "+s.Evidence)
	}
	if s.Via != "" {
		parts = append(parts, "via "+s.Via)
	}
	return strings.Join(parts, "  ")
}

// detailsText writes an entry's inputs as key=value, sorted.
func detailsText(d map[string]any) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v, ok := d[k].(string)
		if !ok {
			b, _ := json.Marshal(d[k])
			v = string(b)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ", ")
}
