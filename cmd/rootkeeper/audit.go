package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
)

func (a *app) auditCommand() *cobra.Command {
	var dir, at string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit --repo DIR [--at TIME] [--json]",
		Short: "One report for an auditor: root chain, keys and evidence, delegations, expiry, policy, transcript",
		Long: `Report, offline and with no device, what an auditor of the repository's
ceremonies asks: the transcript's verdict (transcript verify); every root version
with who signed it, with which device and evidence; the keys trusted now with
their hardware evidence checked again (YubiKey attestations against their roots:
give --attestation-roots for test devices or an own CA); the delegations; the
expiry calendar; the policy (rootkeeper.yaml, without PIN sources).

Markdown by default, readable in a terminal and in a code review; --json for tools.

Exit status: 0 the transcript verifies and clients would accept the repository,
1 otherwise (the report says why), or the repository could not be read.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			t, err := parseAt(at)
			if err != nil {
				return err
			}
			kr := hsm.NewKeyring(a.hsmOptions())
			defer kr.Close()
			rep, err := ceremony.Audit(dir, kr, t)
			if err != nil {
				return err
			}
			if asJSON {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				printAudit(a.stdout, rep)
			}
			if !rep.Transcript.OK || rep.State == ceremony.Invalid {
				return exitStatus{exitError}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&at, "at", "", "the time the expiry calendar is read at (RFC 3339, a date, or +30d); default now")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printAudit(w io.Writer, r *ceremony.AuditReport) {
	fmt.Fprintf(w, "# Audit of %s\n\n", r.Repository)
	fmt.Fprintf(w, "Read at %s. Repository identity: `%s` (`metadata/1.root.json`).\n\n", r.At.Format("2006-01-02T15:04:05Z"), shortDigest(r.Identity))
	verdict := "the transcript verifies"
	if !r.Transcript.OK {
		verdict = "the transcript does NOT verify: " + r.Transcript.Problems[0].Detail
	}
	fmt.Fprintf(w, "**Verdict:** %s; clients: %s.\n\n", verdict, r.State)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "- problem: %s: %s\n", p.Role, p.Detail)
	}
	for _, wn := range append(r.Transcript.Warnings, r.Warnings...) {
		fmt.Fprintf(w, "- warning: %s\n", wn)
	}
	if len(r.Problems)+len(r.Transcript.Warnings)+len(r.Warnings) > 0 {
		fmt.Fprintln(w)
	}
	printAuditTranscript(w, r.Transcript)
	printAuditRoots(w, r.RootChain)
	printAuditKeys(w, r.Keys)
	printAuditDelegations(w, r)
	printAuditCalendar(w, r.Calendar)
	printAuditPolicy(w, r.Policy)
}

// shortDigest is "sha256:" and the first 12 hex digits.
func shortDigest(d string) string {
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return d
}

func printAuditTranscript(w io.Writer, t *ceremony.TranscriptReport) {
	fmt.Fprintln(w, "## Transcript")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| | |")
	fmt.Fprintln(w, "|---|---|")
	fmt.Fprintf(w, "| entries | %d (%d written before anchoring) |\n", t.Entries, t.Legacy)
	if t.Head != "" {
		fmt.Fprintf(w, "| head | entry %d `%s` |\n", t.Entries, shortDigest(t.Head))
	}
	if t.AnchoredThrough > 0 {
		fmt.Fprintf(w, "| anchored by signatures | entries 1 to %d |\n", t.AnchoredThrough)
	}
	if len(t.Unanchored) > 0 {
		fmt.Fprintf(w, "| not yet anchored | %s |\n", seqList(t.Unanchored))
	}
	fmt.Fprintf(w, "| metadata files accounted for | %d |\n\n", t.MetadataFiles)
}

func printAuditRoots(w io.Writer, roots []ceremony.AuditRoot) {
	fmt.Fprintln(w, "## Root chain")
	for _, r := range roots {
		fmt.Fprintf(w, "\n### root v%d\n\n", r.Version)
		if r.Entry > 0 {
			fmt.Fprintf(w, "Written by transcript entry %d (%s) at %s by %s@%s. ", r.Entry, r.Operation, r.Time.Format("2006-01-02T15:04:05Z"), r.Operator, r.Host)
		} else {
			fmt.Fprint(w, "No transcript entry records it. ")
		}
		fmt.Fprintf(w, "Trusts %d of %d root keys; expires %s.\n\n", r.Threshold, len(r.KeyIDs), r.Expires.Format("2006-01-02T15:04:05Z"))
		fmt.Fprintln(w, "| signed by | key | device | evidence (transcript) | evidence record now |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		for _, s := range r.Signatures {
			dev := s.Device
			if s.Serial != "" {
				dev += ", serial " + s.Serial
			}
			if s.Via != "" {
				dev += ", via " + s.Via
			}
			fmt.Fprintf(w, "| %s | %s | %s | `%s` | %s |\n", orNone(s.URI), s.KeyID[:min(12, len(s.KeyID))], orNone(dev), shortDigest(s.Evidence), s.EvidenceNow)
		}
	}
	fmt.Fprintln(w)
}

func orNone(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func printAuditKeys(w io.Writer, keys []ceremony.AuditKey) {
	fmt.Fprintln(w, "## Keys trusted now")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| key | object | roles | evidence | re-checked |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, k := range keys {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", k.KeyID[:min(12, len(k.KeyID))], k.URI, orNone(strings.Join(k.Roles, ", ")), k.Evidence.Summary(), k.Result)
	}
	fmt.Fprintln(w)
}

func printAuditDelegations(w io.Writer, r *ceremony.AuditReport) {
	fmt.Fprintln(w, "## Delegations")
	fmt.Fprintln(w)
	if len(r.Delegations) == 0 {
		fmt.Fprintln(w, "None.")
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintln(w, "| role | from | keys | threshold | paths | terminating |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, d := range r.Delegations {
		paths := strings.Join(d.Paths, " ")
		if d.Bins > 0 {
			paths = fmt.Sprintf("%d hashed bins %s … %s", d.Bins, d.FirstBin, d.LastBin)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %t |\n", d.Name, d.Delegator, len(d.KeyIDs), d.Threshold, paths, d.Terminating)
	}
	fmt.Fprintln(w)
}

func printAuditCalendar(w io.Writer, roles []ceremony.RoleStatus) {
	fmt.Fprintln(w, "## Expiry calendar")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| role | version | expires | re-sign from | state |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	bins := map[string]bool{}
	for _, r := range roles {
		name := r.Role
		if r.Bins != "" {
			if bins[r.Bins] {
				continue // one row per set of bins: status --bins lists each
			}
			bins[r.Bins], name = true, r.Bins+"-*"
		}
		from := r.Expires.Add(-r.Window.D())
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", name, r.Version, r.Expires.Format("2006-01-02T15:04:05Z"), from.Format("2006-01-02T15:04:05Z"), r.Health)
	}
	fmt.Fprintln(w)
}

func printAuditPolicy(w io.Writer, p *ceremony.AuditPolicy) {
	fmt.Fprintln(w, "## Policy")
	fmt.Fprintln(w)
	if p == nil {
		fmt.Fprintln(w, "No rootkeeper.yaml.")
		return
	}
	fmt.Fprintf(w, "Keys must be `%s`; consistent snapshots: %t.\n\n", p.Require, p.ConsistentSnapshot)
	fmt.Fprintln(w, "| role | lifetime | re-signing window | keys | YubiKey policy |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range p.Roles {
		kp := ""
		if r.PINPolicy != "" || r.TouchPolicy != "" {
			kp = fmt.Sprintf("pin %s, touch %s", orNone(r.PINPolicy), orNone(r.TouchPolicy))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.Role, r.Expires, r.Window, strings.Join(r.Keys, ", "), orNone(kp))
	}
}
