package ceremony

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/ceremony/bundle"
	"github.com/rootkeeper/rootkeeper/roles"
)

// applyBootstrap is apply of a bootstrap bundle (init --out): dir holds
// the transcript that recorded the bundle and no metadata yet. The key
// records it writes are checked again (key id, evidence, as when the plan
// was read); root v1 must meet its own threshold; the local online keys
// make and sign snapshot and timestamp v1; preflight and commit as for
// any change.
func (s *Session) applyBootstrap(ctx context.Context, dir string, c *bundle.Checked) (*Result, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, &RepoError{Dir: dir, Detail: "no such directory", HintText: "apply a bootstrap bundle to the directory init --out made it in"}
	}
	lock, err := LockRepo(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock(false)
	rec, err := recoverRepo(dir)
	if err != nil {
		return nil, err
	}
	s.recovered(rec)
	now := s.now()
	old, entries, err := readTranscript(dir, now)
	if err != nil {
		return nil, err
	}
	if err := checkNotBootstrapped(dir, c.Bundle); err != nil {
		return nil, err
	}
	made, err := checkMadeHere(dir, c)
	if err != nil {
		return nil, err
	}
	sum := c.Summarize(now)
	if !c.Complete() {
		return nil, &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("bundle %s is not signed enough yet", short(c.Bundle.ID)), Missing: sum.Missing(),
			HintText: "send the bundle to the officers named above (rootkeeper sign), then apply every signed copy together"}
	}
	ch, err := bootstrapOfBundle(dir, c, now, headAnchor(len(entries), lastLineHash(old)))
	if err != nil {
		return nil, err
	}
	ch.applies(made, c)
	bs, _ := s.Keys.(backendSource)
	if err := checkRecords(ch, bs); err != nil {
		return nil, err
	}
	if err := s.confirm(sum.Text(now)); err != nil {
		return nil, err
	}
	if _, err := s.Sign(ctx, ch, &BundleSource{Bundle: c}, s.Local()); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, roles.TargetsDir), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, &IOError{Op: "create", Path: filepath.Join(dir, roles.TargetsDir), Err: err}
	}
	return s.commit(ch)
}

// checkNotBootstrapped refuses a bootstrap bundle for a directory that
// has a repository already.
func checkNotBootstrapped(dir string, b *bundle.Bundle) error {
	p := roles.MetadataPath(metadata.ROOT, 1, false)
	if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
		return &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("bundle %s makes a new repository, and this directory has one already (%s)", short(b.ID), p),
			HintText: "a bootstrap bundle is applied once, to the directory init --out made it in; change this repository with --out on rotate, targets, …"}
	}
	return nil
}

// bootstrapOfBundle is the change a complete bootstrap bundle makes: the
// new repository from its roles (roles.Assemble), the policy and key
// records of its custodian part, snapshot and timestamp made at apply.
func bootstrapOfBundle(dir string, c *bundle.Checked, now time.Time, head *roles.Anchor) (*Change, error) {
	cu := c.Bundle.Custodian
	if cu == nil || cu.Policy == nil {
		return nil, &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("bundle %s makes a new repository but carries no rootkeeper.yaml", short(c.Bundle.ID)),
			HintText: "make the bundle again with rootkeeper init --plan … --out"}
	}
	pol, problems := ParsePolicy(cu.Policy)
	if len(problems) > 0 {
		return nil, &RepoError{Dir: dir, Detail: "the bundle's rootkeeper.yaml: " + strings.Join(problems, "; ")}
	}
	var root *metadata.RootType
	var targets *metadata.TargetsType
	delegated := map[string]metadata.TargetsType{}
	for _, cr := range c.Roles {
		switch v := cr.Signed.(type) {
		case *metadata.RootType:
			root = v
		case *metadata.TargetsType:
			if cr.Role.Role == RoleTargets {
				targets = v
			} else {
				delegated[cr.Role.Role] = *v
			}
		default:
			return nil, fmt.Errorf("a bundle role %s cannot be applied: snapshot and timestamp are made at apply", cr.Role.Role)
		}
	}
	if root == nil || targets == nil {
		return nil, &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("bundle %s makes a new repository but lacks root or targets v1", short(c.Bundle.ID)), HintText: hintRemake}
	}
	repo, err := roles.Assemble(*root, *targets, delegated, now.Add(pol.Role(RoleSnapshot).Expires.D()), now.Add(pol.Role(RoleTimestamp).Expires.D()))
	if err != nil {
		return nil, err
	}
	repo.Now = func() time.Time { return now }
	repo.Anchor = head // snapshot and timestamp, made at apply, carry the head at apply
	return changeOfBundle(dir, repo, pol, c, now)
}

const hintRemake = "make the change again with --out and have it signed again"

// checkRecords checks the key records a bootstrap writes as the plan's
// keys were checked when it was read: each record's key id recomputed
// from its public key, a key a role of the new repository trusts, its evidence against the
// policy's require (a YubiKey attestation verified again).
func checkRecords(c *Change, bs backendSource) error {
	for _, f := range c.Extra {
		rec, ok := parseRecord(f)
		if !ok {
			continue
		}
		e, err := exportOfRecord(f.Path+" (in the bundle)", rec)
		if err != nil {
			return err
		}
		if _, ok := c.Repo.Key(rec.KeyID); !ok {
			return &ExportError{File: e.file, Detail: "names a key no role of the new repository trusts"}
		}
		role := ""
		if contains(rec.Roles, RoleRoot) {
			role = RoleRoot
		}
		if err := CheckExportedKey(e.file, e, role, c.Policy.Require, bs); err != nil {
			return err
		}
	}
	return nil
}
