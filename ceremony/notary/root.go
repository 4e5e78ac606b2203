package notary

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// A root version as read.
type rootFile struct {
	raw     []byte
	env     *envelope
	root    *root
	version int
}

// rootChain reads the current root and verifies it by Notary's rules
// (trustpinning.ValidateRoot): the pinned certificates must be in it and
// sign it by its threshold — or, with a source that keeps old roots, in
// an earlier root vK, and every root vK+1 … vN must then be signed by a
// threshold of the previous root's certificates and by its own (root
// rotation). It returns the current root's bytes and content.
func (r *reader) rootChain(c *Collection) ([]byte, *root, error) {
	cur, err := r.fetchRoot(0)
	if err != nil {
		return nil, nil, err
	}
	c.RootVersion = cur.version
	c.RootCertIDs = slices.Sorted(maps.Keys(certKeysOf(cur.root)))
	start, err := r.findPinned(cur)
	if err != nil {
		return nil, nil, err
	}
	pinned, err := r.validateRoot(start, nil, start.version == cur.version)
	if err != nil {
		return nil, nil, err
	}
	c.ChainFrom, c.PinnedCertIDs = start.version, pinned
	prev := start
	for v := start.version + 1; v <= cur.version; v++ {
		next := cur
		if v < cur.version {
			if next, err = r.fetchRoot(v); err != nil {
				return nil, nil, err
			}
		}
		if _, err := r.validateRoot(next, prev, true); err != nil {
			return nil, nil, err
		}
		prev = next
	}
	if err := r.checkExpiry(RoleRoot, cur.root.common); err != nil {
		return nil, nil, err
	}
	return cur.raw, cur.root, nil
}

func (r *reader) fetchRoot(version int) (*rootFile, error) {
	label := "root"
	if version > 0 {
		label = fmt.Sprintf("root v%d", version)
	}
	raw, err := r.opts.Source.Fetch(r.ctx, RoleRoot, version, nil, maxFile)
	if err != nil {
		return nil, &Error{GUN: r.opts.GUN, Role: label, Detail: "cannot read it: " + err.Error(),
			HintText: "check --server or --trust-dir and --gun (a trust directory holds tuf/GUN/metadata/root.json)"}
	}
	e, err := parseEnvelope(RoleRoot, raw)
	if err != nil {
		return nil, r.fail(label, "%v", err)
	}
	rt, err := parseRoot(e.Signed)
	if err != nil {
		return nil, r.fail(label, "%v", err)
	}
	if version > 0 && rt.Version != version {
		return nil, r.fail(label, "%d.root.json is root version %d", version, rt.Version)
	}
	return &rootFile{raw: raw, env: e, root: rt, version: rt.Version}, nil
}

// certKeysOf parses the certificate bundle of each root key (parseAllCerts),
// by the key's recomputed id.
func certKeysOf(rt *root) map[string]*certKey {
	out := map[string]*certKey{}
	for _, id := range rt.Roles[RoleRoot].KeyIDs {
		k := rt.Keys[id]
		if k == nil {
			continue
		}
		if ck, err := parseCertKey(k); err == nil {
			out[k.id()] = ck
		}
	}
	return out
}

// pinned reports whether the pin names this certificate key.
func (r *reader) pinned(ck *certKey, id string) bool {
	for _, c := range r.opts.Pin.Certs {
		if bytes.Equal(c.Raw, ck.leaf.Raw) {
			return true
		}
	}
	return slices.Contains(r.opts.Pin.CertIDs, id)
}

// findPinned returns the newest root that holds a pinned certificate:
// the current one, or with a server an earlier version.
func (r *reader) findPinned(cur *rootFile) (*rootFile, error) {
	has := func(rf *rootFile) bool {
		for id, ck := range certKeysOf(rf.root) {
			if r.pinned(ck, id) {
				return true
			}
		}
		return false
	}
	if has(cur) {
		return cur, nil
	}
	if r.opts.Source.Versions() {
		for v := cur.version - 1; v >= 1; v-- {
			rf, err := r.fetchRoot(v)
			if err != nil {
				return nil, err
			}
			if has(rf) {
				return rf, nil
			}
		}
	}
	return nil, &Error{GUN: r.opts.GUN, Role: "root", Detail: "the pinned root certificate is in no root version " + r.versionsTried(cur) +
		"; its root certificates are " + describeCerts(cur.root), HintText: r.pinHint(cur)}
}

func (r *reader) versionsTried(cur *rootFile) string {
	if r.opts.Source.Versions() {
		return fmt.Sprintf("1 to %d", cur.version)
	}
	return fmt.Sprintf("(the trust directory holds only the current root, v%d)", cur.version)
}

// pinHint helps an officer who pinned the key's canonical id (what
// `notary key list` prints) instead of the certificate id.
func (r *reader) pinHint(cur *rootFile) string {
	for id, ck := range certKeysOf(cur.root) {
		if slices.Contains(r.opts.Pin.CertIDs, canonicalID(ck.leaf)) {
			return fmt.Sprintf("%s is the root key's canonical id (notary key list); Notary pins the certificate id: --root-cert-id %s, after checking the certificate", short(canonicalID(ck.leaf)), id)
		}
	}
	return "compare the certificate ids with the officers' records; pin the root certificate with --root-cert FILE or --root-cert-id ID"
}

func describeCerts(rt *root) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(certKeysOf(rt))) {
		ck := certKeysOf(rt)[id]
		parts = append(parts, fmt.Sprintf("%s (CN %q, expires %s)", id, ck.leaf.Subject.CommonName, ck.leaf.NotAfter.UTC().Format("2006-01-02")))
	}
	if len(parts) == 0 {
		return "none that parse"
	}
	return strings.Join(parts, ", ")
}

// validateRoot checks one root: with prev, that a threshold of prev's
// certificates (CN matching, expiry not checked) signed it; its own leaf
// certificates valid for the GUN; without prev, only pinned certificates
// count; and its own threshold. It returns the ids of the certificates it
// counted.
func (r *reader) validateRoot(rf, prev *rootFile, checkExpiry bool) ([]string, error) {
	label := fmt.Sprintf("root v%d", rf.version)
	if prev != nil {
		keys := r.validCertKeys(prev.root, false, nil)
		if err := verifySignatures(rf.env, keys, prev.root.Roles[RoleRoot].Threshold); err != nil {
			return nil, r.fail(label, "not signed by root v%d's certificates (root rotation): %v", prev.version, err)
		}
	}
	var filter func(*certKey, string) bool
	if prev == nil {
		filter = func(ck *certKey, id string) bool { return r.pinned(ck, id) }
	}
	keys := r.validCertKeys(rf.root, checkExpiry, filter)
	if len(keys) == 0 {
		return nil, r.fail(label, "no valid root certificate for %s: %s", r.opts.GUN, r.certProblems(rf.root, checkExpiry))
	}
	if err := verifySignatures(rf.env, keys, rf.root.Roles[RoleRoot].Threshold); err != nil {
		what := "its own certificates"
		if prev == nil {
			what = "the pinned certificates"
		}
		return nil, r.fail(label, "not signed by a threshold of %s: %v", what, err)
	}
	return slices.Sorted(maps.Keys(keys)), nil
}

// validCertKeys are the keys Notary rebuilds from a root's valid leaf
// certificates (CN matching the GUN, validateCert) with their valid
// intermediates, by id; filter, if set, keeps some.
func (r *reader) validCertKeys(rt *root, checkExpiry bool, filter func(*certKey, string) bool) map[string]*key {
	out := map[string]*key{}
	for id, ck := range certKeysOf(rt) {
		if !matchCN(ck.leaf.Subject.CommonName, r.opts.GUN) || validateCert(ck.leaf, checkExpiry, r.at) != nil {
			continue
		}
		var ints = ck.ints
		if checkExpiry {
			ints = nil
			for _, c := range ck.ints {
				if validateCert(c, true, r.at) == nil {
					ints = append(ints, c)
				}
			}
		}
		k, err := ck.key(ints)
		if err != nil || (filter != nil && !filter(ck, k.id()) && !filter(ck, id)) {
			continue
		}
		out[k.id()] = k
	}
	return out
}

// certProblems says why no root certificate is valid.
func (r *reader) certProblems(rt *root, checkExpiry bool) string {
	var out []string
	for id, ck := range certKeysOf(rt) {
		cn := ck.leaf.Subject.CommonName
		switch err := validateCert(ck.leaf, checkExpiry, r.at); {
		case !matchCN(cn, r.opts.GUN):
			out = append(out, fmt.Sprintf("%s has CN %q, which does not match the GUN", short(id), cn))
		case err != nil:
			out = append(out, fmt.Sprintf("%s: %v", short(id), err))
		default:
			out = append(out, fmt.Sprintf("%s is not pinned", short(id)))
		}
	}
	if len(out) == 0 {
		return "no root key is a certificate"
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}
