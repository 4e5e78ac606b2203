package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/ceremony/oci"
	"github.com/rootkeeper/rootkeeper/roles"
)

// Docker Content Trust on the command line: image tags as targets
// (targets add --oci, --name/--sha256/--length, --from), targets list,
// and check-image, the consumer's side.

// Exit codes of check-image besides 0, 1, 2 and 4 (docs/exit-codes.md).
const (
	exitMismatch = 5 // the registry serves another manifest than the one signed
	exitUnsigned = 6 // no trusted role signs the tag
)

// digestFlags are targets add's inputs without files.
type digestFlags struct {
	names, sums, lengths, customs []string
	from                          string
	refs                          []string
	insecure                      bool
}

func (f *digestFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringArrayVar(&f.names, "name", nil, "target name of a digest-only target (repeatable, with --sha256 and --length); with --oci, the name to sign the image under")
	fl.StringArrayVar(&f.sums, "sha256", nil, "sha256 of the content (64 hex digits, or sha256:…)")
	fl.StringArrayVar(&f.lengths, "length", nil, "length of the content in bytes")
	fl.StringArrayVar(&f.customs, "custom", nil, "custom metadata as a JSON object (none, or one per --name)")
	fl.StringVar(&f.from, "from", "", `a file of digest-only targets, one JSON object a line: {"name": …, "sha256": …, "length": …} (- for stdin)`)
	fl.StringArrayVar(&f.refs, "oci", nil, "an image REGISTRY/REPOSITORY:TAG: sign its manifest's digest and length as REPOSITORY:TAG (repeatable)")
	fl.BoolVar(&f.insecure, "insecure-registry", false, "allow plain HTTP to a registry that is not on localhost")
}

func (f *digestFlags) any() bool {
	return len(f.names)+len(f.sums)+len(f.lengths)+len(f.customs)+len(f.refs) > 0 || f.from != ""
}

// inputs checks the flags and returns the targets they name; --oci
// references are resolved in the registry (before any device is opened).
func (f *digestFlags) inputs(ctx context.Context) ([]ceremony.TargetInput, error) {
	if len(f.refs) > 0 {
		return f.ociInputs(ctx)
	}
	var out []ceremony.TargetInput
	if f.from != "" {
		list, err := ceremony.ReadDigestList(f.from)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	n := len(f.names)
	if len(f.sums) != n || len(f.lengths) != n || (len(f.customs) != 0 && len(f.customs) != n) {
		return nil, usageError{fmt.Errorf("--name, --sha256 and --length go together, once per target (got %d, %d, %d), and --custom either not at all or once per target (got %d)",
			n, len(f.sums), len(f.lengths), len(f.customs))}
	}
	for i := range f.names {
		line := ceremony.DigestLine{Name: f.names[i], SHA256: f.sums[i]}
		length, err := strconv.ParseInt(f.lengths[i], 10, 64)
		if err != nil {
			return nil, usageError{fmt.Errorf("--length %q is not a number of bytes", f.lengths[i])}
		}
		line.Length = &length
		if len(f.customs) > 0 {
			if err := json.Unmarshal([]byte(f.customs[i]), &line.Custom); err != nil || line.Custom == nil {
				return nil, usageError{fmt.Errorf("--custom %q is not a JSON object", f.customs[i])}
			}
		}
		in, err := line.Input()
		if err != nil {
			return nil, usageError{err}
		}
		out = append(out, in)
	}
	return out, nil
}

func (f *digestFlags) ociInputs(ctx context.Context) ([]ceremony.TargetInput, error) {
	if len(f.sums)+len(f.lengths)+len(f.customs) > 0 || f.from != "" {
		return nil, usageError{errors.New("--oci resolves the digest and length itself: do not combine it with --sha256, --length, --custom or --from")}
	}
	if len(f.names) > 1 || (len(f.names) == 1 && len(f.refs) > 1) {
		return nil, usageError{errors.New("--name with --oci names one image: give one --oci with it")}
	}
	var out []ceremony.TargetInput
	for _, ref := range f.refs {
		m, err := oci.Resolve(ctx, ref, oci.Options{Insecure: f.insecure})
		if err != nil {
			return nil, err
		}
		name := m.TargetName()
		if len(f.names) == 1 {
			name = f.names[0]
		}
		if name == "" {
			return nil, usageError{fmt.Errorf("%s names no tag: give the target name with --name", ref)}
		}
		if err := ceremony.TargetName(name); err != nil {
			return nil, usageError{err}
		}
		out = append(out, ceremony.TargetInput{Name: name, Digest: &ceremony.DigestInput{
			Length: m.Length, Hashes: map[string][]byte{"sha256": m.SHA256}, Custom: m.Custom()}})
	}
	return out, nil
}

func (a *app) targetsListCommand() *cobra.Command {
	var dir, role string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --repo DIR [--role NAME] [--json]",
		Short: "List the targets of every targets role (or of one)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			list, err := ceremony.ListTargets(dir, role)
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []ceremony.TargetEntry{}
				}
				return a.printJSON(struct {
					Repository string                 `json:"repository"`
					Targets    []ceremony.TargetEntry `json:"targets"`
				}{dir, list})
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tTARGET\tLENGTH\tSHA256\tSTORED")
			for _, e := range list {
				stored := "file"
				if e.External {
					stored = "external"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Role, e.Name, e.Length, e.Hashes["sha256"], stored)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&role, "role", "", "only this targets role")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

type checkFlags struct {
	dir, url, trusted, state, name, at string
	insecure, asJSON                   bool
}

func (a *app) checkImageCommand() *cobra.Command {
	f := &checkFlags{}
	cmd := &cobra.Command{
		Use:   "check-image (--repo DIR | --url URL [--trusted-root FILE]) [--name TARGET] REF",
		Short: "Check that a registry serves the image manifest the tagging key signed",
		Long: `Check an image the way a Docker Content Trust client would: resolve REF
(REGISTRY/REPOSITORY:TAG) in the registry, refresh the TUF metadata as a client
(go-tuf's updater: the root chain from the trusted root, timestamp, snapshot,
targets, delegations), find the target REPOSITORY:TAG (or --name; for
repositories imported from Notary, the bare tag signed for this image's GUN),
and compare the manifest's sha256 and length with those signed.

The trusted root is --trusted-root, else the state directory's root (--state),
else DIR/metadata/1.root.json for --repo; for --url without either, the
repository's 1.root.json is trusted on first use (with a warning).

Exit status: 0 the registry serves the signed manifest, 5 it serves another one,
6 no trusted role signs the tag, 4 the TUF client refuses the metadata,
1 the registry or the metadata could not be read, 2 usage.`,
		Args: exactArgs(1, "one image reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.checkImage(cmd.Context(), f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "repo", "", "the repository's directory")
	fl.StringVar(&f.url, "url", "", "the repository's base URL (metadata at URL/metadata/)")
	fl.StringVar(&f.trusted, "trusted-root", "", "root metadata the client starts from")
	fl.StringVar(&f.state, "state", "", "keep the client's trusted metadata here between runs (rollback protection)")
	fl.StringVar(&f.name, "name", "", "the target name to check the image against (default REPOSITORY:TAG)")
	fl.StringVar(&f.at, "at", "", "check expiry as of this time (2027-01-31, RFC 3339, or +30d)")
	fl.BoolVar(&f.insecure, "insecure-registry", false, "allow plain HTTP to a registry that is not on localhost")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) checkImage(ctx context.Context, f *checkFlags, ref string) error {
	if (f.dir == "") == (f.url == "") {
		return usageError{errors.New("give exactly one of --repo DIR and --url URL")}
	}
	opts := oci.CheckOptions{Ref: ref, Name: f.name, Registry: oci.Options{Insecure: f.insecure},
		TUF: roles.LookupOptions{Dir: f.dir, URL: f.url, StateDir: f.state}}
	if f.at != "" {
		t, err := parseAt(f.at)
		if err != nil {
			return err
		}
		opts.TUF.At = t
	}
	root, err := a.trustedRoot(ctx, f)
	if err != nil {
		return err
	}
	opts.TUF.TrustedRoot = root
	v, err := oci.Check(ctx, opts)
	var ce *oci.ClientError
	if errors.As(err, &ce) {
		a.ui.errorf(err)
		return exitStatus{exitInvalid}
	}
	if err != nil {
		return err
	}
	if f.asJSON {
		if err := a.printJSON(v); err != nil {
			return err
		}
	} else {
		a.printVerdict(v)
	}
	switch v.State {
	case oci.Mismatch:
		a.ui.errorf(&hintedMsg{msg: v.Problem, hint: "do not run this image: the registry (or something between it and you) serves a manifest the tagging key never signed"})
		return exitStatus{exitMismatch}
	case oci.Unsigned:
		a.ui.errorf(&hintedMsg{msg: v.Problem, hint: "sign it with rootkeeper targets add --oci " + ref + ", or check the name with rootkeeper targets list"})
		return exitStatus{exitUnsigned}
	}
	return nil
}

// trustedRoot reads the root the client starts from.
func (a *app) trustedRoot(ctx context.Context, f *checkFlags) ([]byte, error) {
	if f.trusted != "" {
		b, err := os.ReadFile(f.trusted)
		if err != nil {
			return nil, fmt.Errorf("--trusted-root: %w", err)
		}
		return b, nil
	}
	if f.state != "" {
		if _, err := os.Stat(filepath.Join(f.state, "metadata", "root.json")); err == nil {
			return nil, nil // the client's own newest root
		}
	}
	if f.dir != "" {
		b, err := os.ReadFile(filepath.Join(f.dir, "metadata", "1.root.json"))
		if err != nil {
			return nil, &ceremony.RepoError{Dir: f.dir, Detail: "no metadata/1.root.json", Err: err, HintText: "point --repo at a TUF repository directory, or pass --trusted-root"}
		}
		return b, nil
	}
	u := strings.TrimSuffix(f.url, "/") + "/metadata/1.root.json"
	a.ui.printf("warning: trusting %s on first use; pin it with --trusted-root FILE (and keep state with --state DIR)", u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, usageError{fmt.Errorf("--url: %w", err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 512000))
}

func (a *app) printVerdict(v *oci.Verdict) {
	fmt.Fprintf(a.stdout, "check-image: %s %s\n", strings.ToUpper(v.State), v.Reference)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  target\t%s\n", v.Target)
	m := v.Registry
	fmt.Fprintf(tw, "  registry\t%s\t%d bytes\t%s\n", m.Digest, m.Length, m.MediaType)
	if v.Signed != nil {
		sum := v.Signed.Hashes["sha256"]
		if sum == "" {
			sum = "sha512:" + v.Signed.Hashes["sha512"]
		} else {
			sum = "sha256:" + sum
		}
		fmt.Fprintf(tw, "  signed\t%s\t%d bytes\n", sum, v.Signed.Length)
	}
	fmt.Fprintf(tw, "  checked\t%s\n", v.CheckedAt.Format(time.RFC3339))
	tw.Flush()
}

// hintedMsg is an error line with a hint.
type hintedMsg struct{ msg, hint string }

func (h *hintedMsg) Error() string { return h.msg }
func (h *hintedMsg) Hint() string  { return h.hint }
