package ceremony

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/ceremony/bundle"
	"github.com/rootkeeper/rootkeeper/roles"
)

// BundleApplyError is a bundle apply refuses for this repository: made
// for another, for a state it moved away from, not by it, or not signed
// enough yet. Nothing was written.
type BundleApplyError struct {
	Dir, Detail, HintText string
	// Missing lists, per threshold not met, whose signatures are missing.
	Missing []string
}

func (e *BundleApplyError) Error() string {
	msg := fmt.Sprintf("repository %s: %s; nothing was written", e.Dir, e.Detail)
	for _, m := range e.Missing {
		msg += "\n" + m
	}
	return msg
}

// Hint says what to do.
func (e *BundleApplyError) Hint() string { return e.HintText }

// ApplyBundles is rootkeeper apply: the signatures of every copy merged
// and checked (bundle.Merge), then, under the repository's lock, the
// bundle must be this repository's (its first root), made by it (the
// transcript's record of the bundle, payload by payload), for the state it
// is in (every planned-on file unchanged), and every threshold met —
// otherwise nothing is written and the error says whose signatures are
// missing. The officer confirms the summary; the local online keys make
// snapshot and timestamp; the preflight runs and the change is committed
// through the journal, its transcript entry carrying the bundle's log.
func (s *Session) ApplyBundles(ctx context.Context, dir string, paths []string) (*Result, error) {
	c, err := ReadBundles(paths)
	if err != nil {
		return nil, err
	}
	if err := c.Bundle.Expired(c.Name, s.now()); err != nil {
		return nil, err
	}
	if c.Bundle.Repository.Bootstrap {
		return s.applyBootstrap(ctx, dir, c) // bundleboot.go
	}
	var res *Result
	err = s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		made, err := checkBundleFor(dir, repo, c)
		if err != nil {
			return err
		}
		now := s.now()
		sum := c.Summarize(now)
		if !c.Complete() {
			return &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("bundle %s is not signed enough yet", short(c.Bundle.ID)), Missing: sum.Missing(),
				HintText: "send the bundle to the officers named above (rootkeeper sign), then apply every signed copy together"}
		}
		ch, err := changeOfBundle(dir, repo, pol, c, now)
		if err != nil {
			return err
		}
		ch.applies(made, c)
		if err := s.confirm(sum.Text(now)); err != nil {
			return err
		}
		if _, err := s.Sign(ctx, ch, &BundleSource{Bundle: c}, s.Local()); err != nil {
			return err
		}
		res, err = s.commit(ch)
		return err
	})
	return res, err
}

// checkBundleFor refuses a bundle of another repository, one this
// repository did not make (or whose payloads differ from what it made)
// and one made for a state the repository has moved away from.
func checkBundleFor(dir string, repo *roles.Repo, c *bundle.Checked) (*Entry, error) {
	b := c.Bundle
	first, err := os.ReadFile(filepath.Join(dir, roles.MetadataPath(metadata.ROOT, 1, false)))
	if err != nil {
		return nil, &RepoError{Dir: dir, Detail: "cannot read metadata/1.root.json", Err: err}
	}
	if id := sha256hex(first); id != b.Repository.FirstRoot {
		return nil, &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("bundle %s was made for another repository (its 1.root.json has SHA-256 %s, this repository's %s)",
			short(b.ID), short(b.Repository.FirstRoot), short(id)), HintText: "apply the bundle with --repo naming the repository it was made for"}
	}
	made, err := checkMadeHere(dir, c)
	if err != nil {
		return nil, err
	}
	loaded := repo.Loaded()
	for _, p := range slices.Sorted(maps.Keys(b.PlannedOn)) {
		cur, ok := loaded[p]
		if !ok {
			if data, err := os.ReadFile(filepath.Join(dir, p)); err == nil {
				cur, ok = sha256hexOf(data), true
			}
		}
		if !ok || cur != b.PlannedOn[p] {
			return nil, &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("the repository moved on since bundle %s was made: %s changed", short(b.ID), p),
				HintText: "the bundle's change was planned on a state that is gone: make the change again with --out and have it signed again"}
		}
	}
	if n := len(repo.Roots); n != rootsIn(b) {
		return nil, &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("the repository moved on since bundle %s was made: it has root v%d", short(b.ID), n),
			HintText: "make the change again with --out and have it signed again"}
	}
	return made, nil
}

func rootsIn(b *bundle.Bundle) int {
	n := 0
	for _, f := range b.Previous {
		if f.Role == metadata.ROOT {
			n++
		}
	}
	return n
}

// checkMadeHere finds the transcript's record of the bundle and compares
// every payload hash and the custodian part with it.
func checkMadeHere(dir string, c *bundle.Checked) (*Entry, error) {
	_, entries, err := readTranscript(dir, time.Time{})
	if err != nil {
		return nil, err
	}
	b := c.Bundle
	for _, e := range entries {
		if e.Operation != OpBundle || e.Details["bundle"] != b.ID {
			continue
		}
		payloads, _ := e.Details["payloads"].(map[string]any)
		if len(payloads) != len(b.Roles) {
			return nil, bundleChanged(dir, b, "its roles", e.Seq)
		}
		for _, r := range b.Roles {
			if payloads[r.Role] != r.PayloadSHA256 {
				return nil, bundleChanged(dir, b, "the payload of "+r.Role, e.Seq)
			}
		}
		if d := e.Details["custodian_sha256"]; d != b.Custodian.Digest() && d != b.Custodian.LegacyDigest() {
			return nil, bundleChanged(dir, b, "what it writes besides the signed roles", e.Seq)
		}
		return &e, nil
	}
	return nil, &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("this repository did not make bundle %s (its transcript has no record of it)", short(b.ID)),
		HintText: "apply a bundle to the repository whose custodian made it with --out"}
}

func bundleChanged(dir string, b *bundle.Bundle, what string, seq int) error {
	return &BundleApplyError{Dir: dir, Detail: fmt.Sprintf("%s in bundle %s is not what this repository put in it (transcript entry %d): the bundle was changed after it was made", what, short(b.ID), seq),
		HintText: "do not apply this copy; make the change again with --out"}
}

// changeOfBundle is the change a complete bundle makes: its roles with
// their signatures, then snapshot and timestamp made from them (Follow,
// with the local online keys), and what the custodian part writes.
func changeOfBundle(dir string, repo *roles.Repo, pol *Policy, c *bundle.Checked, now time.Time) (*Change, error) {
	cu := c.Bundle.Custodian
	if cu == nil {
		cu = &bundle.Custodian{}
	}
	ch := &Change{Op: c.Bundle.Operation, Dir: dir, At: now, Base: repo.Loaded(), Repo: repo, Policy: pol, Records: loadRecords(dir),
		Changed: cu.Changed, Remove: cu.Remove, Details: map[string]any{}, NoPolicy: cu.Policy == nil}
	for k, v := range cu.Details {
		ch.Details[k] = v
	}
	ch.Details["bundle"], ch.Details["bundle_signatures"] = c.Bundle.ID, signedLog(c.Bundle.Log)
	if cu.Policy != nil {
		p, problems := ParsePolicy(cu.Policy)
		if len(problems) > 0 {
			return nil, &RepoError{Dir: dir, Detail: "the bundle's rootkeeper.yaml: " + strings.Join(problems, "; ")}
		}
		ch.Policy = p
	}
	for _, f := range cu.Files {
		ch.Extra = append(ch.Extra, File{Path: f.Path, Data: f.Data, Immutable: strings.HasPrefix(f.Path, roles.TargetsDir+"/") && repo.Root().Signed.ConsistentSnapshot})
	}
	for _, cr := range c.Roles {
		if !c.Bundle.Repository.Bootstrap { // a bootstrap's are in place (roles.Assemble)
			if err := placeRole(repo, cr); err != nil {
				return nil, err
			}
		}
		st := &Step{Role: cr.Role.Role}
		for _, q := range cr.Reqs {
			st.Needs = append(st.Needs, Need{Of: q.From, Threshold: q.Threshold, KeyIDs: q.KeyIDs, Keys: cr.Keys})
		}
		ch.Steps = append(ch.Steps, st)
	}
	pub, err := ch.publishSteps()
	if err != nil {
		return nil, err
	}
	ch.Steps = append(ch.Steps, pub...)
	return ch, nil
}

// appliedBundle is what the transcript records of a bundle being
// applied: the entry that recorded it when it was made, and the anchor its
// roles were signed on (the head just before that entry; snapshot and
// timestamp, made at apply, carry the head at apply).
type appliedBundle struct {
	id      string
	seq     int             // the transcript entry of the bundle made (OpBundle)
	planned roles.Anchor    // the anchor the bundle's roles carry
	roles   map[string]bool // the roles the bundle carries
}

// applies makes ch the application of bundle c, recorded when it was
// made at transcript entry made: the entry of ch names it (bundle_seq).
func (ch *Change) applies(made *Entry, c *bundle.Checked) {
	ab := &appliedBundle{id: c.Bundle.ID, seq: made.Seq, planned: *headAnchor(made.Seq-1, made.Prev), roles: map[string]bool{}}
	for _, r := range c.Bundle.Roles {
		ab.roles[r.Role] = true
	}
	ch.bundle = ab
	ch.Details["bundle_seq"] = made.Seq
}

// BundleSource is a SignatureSource of the signatures a (merged, checked)
// bundle carries: Session.Sign adds each one the step wants, verified.
type BundleSource struct {
	Bundle *bundle.Checked
}

// Sign adds the bundle's signatures over req's role.
func (b *BundleSource) Sign(_ context.Context, req *SignRequest) error {
	for _, cr := range b.Bundle.Roles {
		if cr.Role.Role != req.Role {
			continue
		}
		if !bytes.Equal(cr.Payload, req.Payload) {
			return &bundle.PayloadError{File: b.Bundle.Name, Role: req.Role, Detail: "differs from the metadata it is applied as"}
		}
		for _, s := range cr.Signatures {
			raw, err := hex.DecodeString(s.Sig)
			if err != nil {
				return err
			}
			if req.Wanted(s.KeyID) {
				if err := req.Add(s.KeyID, raw); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// placeRole puts a bundle role's new version, unsigned, into the
// repository in memory; BundleSource brings its signatures.
func placeRole(repo *roles.Repo, cr *bundle.CheckedRole) error {
	sigs := []metadata.Signature{}
	switch v := cr.Signed.(type) {
	case *metadata.RootType:
		repo.Roots = append(repo.Roots, &metadata.Metadata[metadata.RootType]{Signed: *v, Signatures: sigs})
	case *metadata.TargetsType:
		md := &metadata.Metadata[metadata.TargetsType]{Signed: *v, Signatures: sigs}
		if cr.Role.Role == RoleTargets {
			repo.Targets = md
		} else {
			if repo.Delegated == nil {
				repo.Delegated = map[string]*metadata.Metadata[metadata.TargetsType]{}
			}
			repo.Delegated[cr.Role.Role] = md
		}
	default:
		return fmt.Errorf("a bundle role %s cannot be applied: snapshot and timestamp are made at apply", cr.Role.Role)
	}
	return nil
}

func sha256hexOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
