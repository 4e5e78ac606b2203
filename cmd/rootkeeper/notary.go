package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/ceremony/notary"
)

func (a *app) importCommand() *cobra.Command {
	cmd := groupCommand(&cobra.Command{
		Use:   "import",
		Short: "Create a repository from another system's trust data",
	})
	cmd.AddCommand(a.importNotaryCommand())
	return cmd
}

type notaryFlags struct {
	gun, server, trustDir, plan, dir string
	certs, certIDs, maps             []string
	yes, asJSON                      bool
}

func (a *app) importNotaryCommand() *cobra.Command {
	f := &notaryFlags{}
	cmd := &cobra.Command{
		Use:   "notary --gun GUN (--server URL | --trust-dir DIR) (--root-cert FILE | --root-cert-id ID) --plan PLAN --repo NEWDIR",
		Short: "Migrate a Notary v1 (Docker Content Trust) collection to a new TUF repository",
		Long: `Read the Notary v1 trust collection GUN from a notary-server or a Notary/Docker
trust directory (~/.notary, ~/.docker/trust), verify it by Notary's own rules —
the root certificate you pin (--root-cert or --root-cert-id, repeatable: a
threshold of pinned certificates must sign the root), its CN against the GUN,
expiry, SHA-1, the root rotation chain, every role's threshold and signatures,
the checksums from timestamp down — and run the bootstrap ceremony of PLAN into
NEWDIR, with the collection's targets (same names, hashes and lengths, no
files) in the roles the Notary roles map to: targets stays targets,
targets/NAME becomes the plan's delegation NAME (or --map targets/NAME=ROLE).

The keys of the new repository come from the plan, in hardware; no Notary key is
imported. A collection that does not verify is refused and nothing is written.
See docs/runbook-notary-migration.md.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			imp, plan, err := f.parse()
			if err != nil {
				return err
			}
			return a.change(f.yes, f.asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.ImportNotary(cmd.Context(), plan, f.dir, *imp)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.gun, "gun", "", "the collection's GUN (registry.example.org/library/app; docker.io/library/app on Docker Hub)")
	fl.StringVar(&f.server, "server", "", "read it from this notary-server (https://notary.example.org)")
	fl.StringVar(&f.trustDir, "trust-dir", "", "read it from this trust directory (holds tuf/GUN/metadata/)")
	fl.StringArrayVar(&f.certs, "root-cert", nil, "pin this root certificate (PEM file; repeatable)")
	fl.StringArrayVar(&f.certIDs, "root-cert-id", nil, "pin the root certificate with this Notary certificate id (repeatable)")
	fl.StringArrayVar(&f.maps, "map", nil, "put the targets of Notary role FROM into role TO of the plan: FROM=TO (repeatable)")
	fl.StringVar(&f.plan, "plan", "", "the ceremony plan of the new repository (YAML)")
	fl.StringVar(&f.dir, "repo", "", "the new repository's directory")
	fl.BoolVar(&f.yes, "yes", false, "do not ask for confirmation (the summary is still printed)")
	fl.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	return cmd
}

var certIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// parse checks every flag, reads the pins and the plan; nothing is fetched yet.
func (f *notaryFlags) parse() (*ceremony.NotaryImport, *ceremony.Plan, error) {
	for _, req := range [][2]string{{"gun", f.gun}, {"plan", f.plan}, {"repo", f.dir}} {
		if err := requireFlag(req[0], req[1]); err != nil {
			return nil, nil, err
		}
	}
	if err := notary.CheckGUN(f.gun); err != nil {
		return nil, nil, usageError{fmt.Errorf("--gun: %w", err)}
	}
	if (f.server == "") == (f.trustDir == "") {
		return nil, nil, usageError{errors.New("give exactly one of --server URL and --trust-dir DIR")}
	}
	if len(f.certs)+len(f.certIDs) == 0 {
		return nil, nil, usageError{errors.New("pin the collection's root certificate with --root-cert FILE or --root-cert-id ID")}
	}
	imp := &ceremony.NotaryImport{GUN: f.gun, Map: map[string]string{}}
	if f.server != "" {
		if !strings.HasPrefix(f.server, "https://") && !strings.HasPrefix(f.server, "http://") {
			return nil, nil, usageError{fmt.Errorf("--server %q: give a URL such as https://notary.example.org", f.server)}
		}
		imp.Source = &notary.Server{URL: f.server, GUN: f.gun}
	} else {
		if fi, err := os.Stat(f.trustDir); err != nil || !fi.IsDir() {
			return nil, nil, usageError{fmt.Errorf("--trust-dir %s: not a directory", f.trustDir)}
		}
		imp.Source = &notary.TrustDir{Dir: f.trustDir, GUN: f.gun}
	}
	for _, id := range f.certIDs {
		if !certIDRE.MatchString(id) {
			return nil, nil, usageError{fmt.Errorf("--root-cert-id %q is not a certificate id (64 lower-case hex digits)", id)}
		}
		imp.Pin.CertIDs = append(imp.Pin.CertIDs, id)
	}
	for _, file := range f.certs {
		c, err := readCert(file)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--root-cert %s: %w", file, err)}
		}
		imp.Pin.Certs = append(imp.Pin.Certs, c)
	}
	for _, m := range f.maps {
		from, to, ok := strings.Cut(m, "=")
		if !ok || !(from == notary.RoleTargets || notary.IsDelegation(from)) || to == "" {
			return nil, nil, usageError{fmt.Errorf("--map %q: write FROM=TO, FROM a Notary role (targets/releases), TO a role of the plan", m)}
		}
		imp.Map[from] = to
	}
	plan, err := ceremony.LoadPlan(f.plan)
	if err != nil {
		return nil, nil, err
	}
	return imp, plan, nil
}

// readCert reads the first certificate of a PEM file.
func readCert(file string) (*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate in it")
	}
	return x509.ParseCertificate(block.Bytes)
}
