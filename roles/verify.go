package roles

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Rules name what a Problem is about.
const (
	RuleMissing     = "missing"            // a file clients need is not there
	RuleParse       = "parse"              // a file is not valid metadata of its kind
	RuleThreshold   = "threshold"          // too few valid signatures by the role's keys
	RuleRootChain   = "root-chain"         // a root is not signed by a threshold of the previous root's keys
	RuleVersion     = "version"            // a version disagrees with the file that names it
	RuleLengthHash  = "length-hash"        // a file disagrees with the length/hashes recorded for it
	RuleExpired     = "expired"            // a role is expired at the reference time
	RuleMargin      = "margin"             // a role expires within its margin
	RuleKeyID       = "key-id"             // a key id is not the hash of its key, or one key has two ids
	RuleKeyMissing  = "key-missing"        // a role names a key id that is not defined
	RuleKeyType     = "key-type"           // keytype, scheme and key material disagree or are unsupported
	RuleSigEncoding = "signature-encoding" // a signature only lax clients accept
	RuleDelegation  = "delegation"         // a delegation is broken or a target lies outside it
	RuleTargetFile  = "target-file"        // a target file is missing or differs from its metadata
	RuleSpecVersion = "spec-version"       // spec_version is not TUF 1.x
	RuleClient      = "client"             // the TUF client rules reject the file for another reason
	RuleSize        = "size"               // a file is larger than clients download (their default length limits)
	RuleRoleName    = "role-name"          // a role name that is not safe in a URL and a file name on every server
	RuleNumber      = "number-range"       // a version, length or threshold out of range (tuf-js reads integers exactly only below 2^53)
	RuleDepth       = "delegation-depth"   // a role or target beyond the delegations clients follow (32)
	RuleEncoding    = "encoding"           // the signed part is not what every client re-encodes and checks the signatures over
	RuleTargetPath  = "target-path"        // a target path or path pattern that clients read differently or cannot fetch
)

// fatal rules are those a client fails on; a client error on a file that
// already has one of them is not reported twice.
var fatal = []string{RuleMissing, RuleParse, RuleThreshold, RuleRootChain, RuleVersion, RuleLengthHash,
	RuleExpired, RuleKeyMissing, RuleKeyType, RuleClient, RuleSize}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// TrustedRoot is the root a client starts from; nil means
	// metadata/1.root.json of the repository.
	TrustedRoot []byte
	// At is the reference time; zero means time.Now().
	At time.Time
	// Margins makes a role that expires less than its margin after At a
	// problem. Keys are role names; "*" applies to roles without their own.
	Margins map[string]time.Duration
	// CheckTargets checks every listed target file under targets/ against
	// its length and hashes.
	CheckTargets bool
	// Cache, shared with CheckClients and CheckVersions over the same
	// files, parses and checks each distinct file once; nil means a cache
	// for this call only.
	Cache *Cache
}

// Report is the outcome of Verify.
type Report struct {
	OK       bool         `json:"ok"`       // no problems
	Roles    []RoleReport `json:"roles"`    // root versions in chain order, timestamp, snapshot, targets, delegated roles
	Problems []Problem    `json:"problems"` // empty when OK
}

// RoleReport is the status of one role's metadata file.
type RoleReport struct {
	Role            string    `json:"role"`
	File            string    `json:"file"`
	Version         int64     `json:"version"`
	Expires         time.Time `json:"expires"`
	Threshold       int       `json:"threshold"`
	KeyIDs          []string  `json:"keyids"`
	ValidSignatures int       `json:"valid_signatures"`    // distinct keys of the role with a valid signature
	Delegator       string    `json:"delegator,omitempty"` // "root v3", "targets", …
	// Bins is the name prefix of the hashed bins (TAP 15 succinct roles)
	// this role is one of, empty for any other role.
	Bins string `json:"bins,omitempty"`
	Err  string `json:"error,omitempty"` // the first problem of this role, if any
}

// Problem is one thing wrong with the repository.
type Problem struct {
	Role   string `json:"role"`
	File   string `json:"file,omitempty"`
	Rule   string `json:"rule"`           // one of the Rule constants
	Detail string `json:"detail"`         // what is wrong
	Hint   string `json:"hint,omitempty"` // what to do
}

// String gives the detail and, if any, the hint.
func (p Problem) String() string {
	if p.Hint == "" {
		return p.Detail
	}
	return p.Detail + " (" + p.Hint + ")"
}

type verifier struct {
	fsys    fs.FS
	opts    VerifyOptions
	at      time.Time
	rep     *Report
	s       *scanned
	trusted []byte
	tfile   string
	chain   []scannedRoot
	c       *Cache
	byName  map[string]*metadata.Metadata[metadata.TargetsType] // targets roles by name, for delegation
}

func (v *verifier) add(role, file, rule, detail, hint string) {
	v.rep.Problems = append(v.rep.Problems, Problem{Role: role, File: file, Rule: rule, Detail: detail, Hint: hint})
}

func (v *verifier) has(file string, rules ...string) bool {
	for _, p := range v.rep.Problems {
		if p.File == file && slices.Contains(rules, p.Rule) {
			return true
		}
	}
	return false
}

// Verify checks the repository in fsys as a TUF client would, starting
// from the trusted root (go-tuf's trustedmetadata rules: root chain,
// timestamp, snapshot, targets, every delegated role), and adds what
// clients differ on or forget: recomputed key ids, keytype/scheme/curve
// agreement, DER signatures, both thresholds of every new root, expiry
// margins, the rules of the strictest client where go-tuf's trustedmetadata
// is more lenient (length limits, role names, integers below 2^53, the
// encoding both clients sign-check, the clients' delegation search:
// docs/client-rules.md) and, optionally, the target files themselves. It returns an
// error only when files cannot be read; everything else is in the report.
func Verify(fsys fs.FS, opts VerifyOptions) (*Report, error) {
	if fsys == nil {
		return nil, errors.New("no repository file system")
	}
	v := &verifier{fsys: readOnce(fsys), opts: opts, at: opts.At, rep: &Report{}, c: cacheOrNew(opts.Cache)}
	fsys = v.fsys
	if v.at.IsZero() {
		v.at = time.Now()
	}
	v.trusted, v.tfile = opts.TrustedRoot, "(trusted root)"
	if v.trusted == nil {
		v.tfile = rootPath(1)
		data, err := readBounded(fsys, v.tfile, RootMaxLength)
		if e, big := tooLarge(err); big {
			v.add(metadata.ROOT, v.tfile, RuleSize, fmt.Sprintf("%s %s: more than %s: clients refuse to download it", v.tfile, e.sizeText(), limitSource(metadata.ROOT)),
				sizeHint(metadata.ROOT))
			return v.finish(), nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			v.add(metadata.ROOT, v.tfile, RuleMissing, v.tfile+" is missing: this is not a TUF repository directory",
				"point at the directory that contains metadata/ and targets/")
			return v.finish(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", v.tfile, err)
		}
		v.trusted = data
	}
	v.prewalk()
	base, err := parseCached[metadata.RootType](v.c, v.trusted)
	if err != nil {
		v.add(metadata.ROOT, v.tfile, RuleParse, fmt.Sprintf("%s: not valid root metadata: %v", v.tfile, err), "")
		return v.finish(), nil
	}
	v.s = scanRepo(fsys, base.Signed.Version+1, base, v.c, 1)
	if v.s.ioErr != nil {
		return nil, v.s.ioErr
	}
	v.chain = append([]scannedRoot{{path: v.tfile, md: base}}, v.s.roots...)
	v.rep.Problems = append(v.rep.Problems, v.s.problems...)

	v.checkRoots()
	v.checkTopLevel()
	v.checkDelegated()
	v.checkNameCase()
	v.checkSearch()
	v.checkRotations()
	if opts.CheckTargets {
		if err := v.checkTargetFiles(); err != nil {
			return nil, err
		}
	}
	// The client's verdict at the reference time; if it stops on an expiry,
	// walk again without expiry to find what else a client would reject.
	if err := v.walk(v.at); errors.Is(err, &metadata.ErrExpiredMetadata{}) {
		v.walk(time.Time{})
	}
	return v.finish(), nil
}

func (v *verifier) finish() *Report {
	rep := v.rep
	for _, p := range rep.Problems {
		i := slices.IndexFunc(rep.Roles, func(r RoleReport) bool { return p.File != "" && r.File == p.File })
		if i < 0 && p.Role != metadata.ROOT {
			i = slices.IndexFunc(rep.Roles, func(r RoleReport) bool { return r.Role == p.Role })
		}
		if i < 0 {
			rep.Roles = append(rep.Roles, RoleReport{Role: p.Role, File: p.File})
			i = len(rep.Roles) - 1
		}
		if rep.Roles[i].Err == "" {
			rep.Roles[i].Err = p.Detail
		}
	}
	rep.OK = len(rep.Problems) == 0
	return rep
}

// finalRoot is the newest root of the chain.
func (v *verifier) finalRoot() scannedRoot { return v.chain[len(v.chain)-1] }

func rootLabel(md *metadata.Metadata[metadata.RootType]) string {
	return fmt.Sprintf("root v%d", md.Signed.Version)
}

func (v *verifier) checkRoots() {
	for i, cr := range v.chain {
		md := cr.md
		label := rootLabel(md)
		rr := RoleReport{Role: metadata.ROOT, File: cr.path, Version: md.Signed.Version, Expires: md.Signed.Expires}
		v.checkSpec(metadata.ROOT, cr.path, label, md.Signed.SpecVersion)
		v.checkEncoding(metadata.ROOT, cr.path, label, md.Signed)
		v.checkKeys(metadata.ROOT, cr.path, label, md.Signed.Keys)
		for _, name := range metadata.TOP_LEVEL_ROLE_NAMES {
			role := md.Signed.Roles[name]
			if role == nil {
				v.add(metadata.ROOT, cr.path, RuleParse, fmt.Sprintf("%s: defines no %s role", label, name), "")
				continue
			}
			v.checkRoleKeyIDs(metadata.ROOT, cr.path, fmt.Sprintf("%s, role %s", label, name), md.Signed.Keys, role.KeyIDs, role.Threshold)
		}
		payload, err := v.c.canonical(md, md.Signed)
		if err != nil {
			v.add(metadata.ROOT, cr.path, RuleParse, fmt.Sprintf("%s: cannot be encoded as canonical JSON: %v", label, err), "")
			v.rep.Roles = append(v.rep.Roles, rr)
			continue
		}
		if own := md.Signed.Roles[metadata.ROOT]; own != nil {
			rr.Threshold, rr.KeyIDs = own.Threshold, slices.Clone(own.KeyIDs)
			rr.ValidSignatures = v.countSigs(metadata.ROOT, cr.path, label, md.Signatures, payload, md.Signed.Keys, own.KeyIDs)
			if rr.ValidSignatures < own.Threshold {
				v.add(metadata.ROOT, cr.path, RuleThreshold,
					fmt.Sprintf("%s: signed by %d of %d required keys of %s (its own keys)", label, rr.ValidSignatures, own.Threshold, label),
					"collect signatures from more of its root keys: "+shortList(own.KeyIDs))
			}
		}
		if i > 0 {
			prev := v.chain[i-1].md
			rr.Delegator = rootLabel(prev)
			if pr := prev.Signed.Roles[metadata.ROOT]; pr != nil {
				n, _ := countValid(v.c, md.Signatures, payload, prev.Signed.Keys, pr.KeyIDs)
				if n < pr.Threshold {
					v.add(metadata.ROOT, cr.path, RuleRootChain,
						fmt.Sprintf("%s: signed by %d of %d required keys of %s", label, n, pr.Threshold, rootLabel(prev)),
						fmt.Sprintf("a new root must be signed by a threshold of the previous root's keys as well as its own (TUF 5.3.4): collect signatures from %s keys %s",
							rootLabel(prev), shortList(pr.KeyIDs)))
				}
			}
		}
		v.rep.Roles = append(v.rep.Roles, rr)
	}
	final := v.finalRoot()
	v.checkExpiry(metadata.ROOT, final.path, rootLabel(final.md), final.md.Signed.Expires)
}

func (v *verifier) checkTopLevel() {
	final := v.finalRoot()
	root := final.md
	from := rootLabel(root)
	type entry struct {
		role, file string
		md         any
	}
	s := v.s
	var list []entry
	if s.timestamp != nil {
		list = append(list, entry{metadata.TIMESTAMP, s.tsPath, s.timestamp})
	}
	if s.snapshot != nil {
		list = append(list, entry{metadata.SNAPSHOT, s.snPath, s.snapshot})
	}
	if s.targets != nil {
		list = append(list, entry{metadata.TARGETS, s.tgPath, s.targets})
	}
	for _, e := range list {
		var (
			version int64
			expires time.Time
			spec    string
			sigs    []metadata.Signature
			signed  any
		)
		switch md := e.md.(type) {
		case *metadata.Metadata[metadata.TimestampType]:
			version, expires, spec, sigs, signed = md.Signed.Version, md.Signed.Expires, md.Signed.SpecVersion, md.Signatures, md.Signed
		case *metadata.Metadata[metadata.SnapshotType]:
			version, expires, spec, sigs, signed = md.Signed.Version, md.Signed.Expires, md.Signed.SpecVersion, md.Signatures, md.Signed
		case *metadata.Metadata[metadata.TargetsType]:
			version, expires, spec, sigs, signed = md.Signed.Version, md.Signed.Expires, md.Signed.SpecVersion, md.Signatures, md.Signed
		}
		rr := RoleReport{Role: e.role, File: e.file, Version: version, Expires: expires, Delegator: from}
		v.checkSpec(e.role, e.file, e.role, spec)
		v.checkVersionMin(e.role, e.file, e.role, version)
		v.checkEncoding(e.role, e.file, e.role, signed)
		if role := root.Signed.Roles[e.role]; role != nil {
			rr.Threshold, rr.KeyIDs = role.Threshold, slices.Clone(role.KeyIDs)
			rr.ValidSignatures = v.checkSigned(e.role, e.file, e.role, from, e.md, signed, sigs, root.Signed.Keys, role.KeyIDs, role.Threshold)
		}
		v.checkExpiry(e.role, e.file, e.role, expires)
		v.rep.Roles = append(v.rep.Roles, rr)
	}
	if s.targets != nil {
		v.checkTargetEntries(metadata.TARGETS, s.tgPath, s.targets.Signed.Targets)
		v.checkDelegations(metadata.TARGETS, s.tgPath, s.targets)
	}
}

func (v *verifier) checkDelegated() {
	for _, d := range v.s.delegated {
		rr := RoleReport{Role: d.name, File: d.path, Version: d.md.Signed.Version, Expires: d.md.Signed.Expires, Delegator: d.delegator}
		v.checkSpec(d.name, d.path, d.name, d.md.Signed.SpecVersion)
		v.checkVersionMin(d.name, d.path, d.name, d.md.Signed.Version)
		v.checkEncoding(d.name, d.path, d.name, d.md.Signed)
		v.checkTargetEntries(d.name, d.path, d.md.Signed.Targets)
		if del := v.delegation(d.name, d.delegator); del != nil {
			keys, ids, threshold := del.keys()
			rr.Threshold, rr.KeyIDs = threshold, slices.Clone(ids)
			if del.role == nil {
				rr.Bins = del.md.Signed.Delegations.SuccinctRoles.NamePrefix
			}
			rr.ValidSignatures = v.checkSigned(d.name, d.path, d.name, d.delegator, d.md, d.md.Signed, d.md.Signatures, keys, ids, threshold)
			for _, p := range slices.Sorted(maps.Keys(d.md.Signed.Targets)) {
				if !del.covers(d.name, p) {
					v.add(d.name, d.path, RuleDelegation,
						fmt.Sprintf("%s: lists target %q outside the paths %s delegates to it: clients ignore it", d.name, p, d.delegator),
						"move the target to a role trusted for its path, or widen the delegation")
				}
			}
		}
		v.checkExpiry(d.name, d.path, d.name, d.md.Signed.Expires)
		v.checkDelegations(d.name, d.path, d.md)
		v.rep.Roles = append(v.rep.Roles, rr)
	}
}

// delegation finds how delegator delegates to name in the scanned repository.
func (v *verifier) delegation(name, delegator string) *delegation {
	if v.byName == nil {
		v.byName = map[string]*metadata.Metadata[metadata.TargetsType]{metadata.TARGETS: v.s.targets}
		for _, d := range v.s.delegated {
			v.byName[d.name] = d.md
		}
	}
	md := v.byName[delegator]
	if md == nil || md.Signed.Delegations == nil {
		return nil
	}
	dl := md.Signed.Delegations
	if dl.Roles != nil {
		for i := range dl.Roles {
			if dl.Roles[i].Name == name {
				return &delegation{name: delegator, md: md, role: &dl.Roles[i]}
			}
		}
		return nil
	}
	if dl.SuccinctRoles != nil {
		return &delegation{name: delegator, md: md}
	}
	return nil
}

// checkDelegations lints the keys and roles a targets role delegates to.
func (v *verifier) checkDelegations(role, file string, md *metadata.Metadata[metadata.TargetsType]) {
	dl := md.Signed.Delegations
	if dl == nil {
		return
	}
	v.checkKeys(role, file, role, dl.Keys)
	v.checkDelegationRules(role, file, dl)
	for _, d := range dl.Roles {
		v.checkRoleKeyIDs(role, file, fmt.Sprintf("%s, delegation %q", role, d.Name), dl.Keys, d.KeyIDs, d.Threshold)
		if len(d.Paths) > 0 && len(d.PathHashPrefixes) > 0 {
			v.add(role, file, RuleDelegation, fmt.Sprintf("%s: delegation %q has both paths and path_hash_prefixes", role, d.Name), "")
		}
	}
	if dl.Roles == nil && dl.SuccinctRoles != nil {
		v.checkRoleKeyIDs(role, file, fmt.Sprintf("%s, hashed bins %q", role, dl.SuccinctRoles.NamePrefix), dl.Keys, dl.SuccinctRoles.KeyIDs, dl.SuccinctRoles.Threshold)
	}
}

// checkKeys recomputes every key id and checks keytype/scheme/curve.
func (v *verifier) checkKeys(role, file, label string, keys map[string]*metadata.Key) {
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		k := keys[id]
		if k == nil {
			v.add(role, file, RuleParse, fmt.Sprintf("%s: key id %s has no key", label, short(id)), "")
			continue
		}
		// Keys of schemes rootkeeper does not know are reported only where
		// a role relies on them (checkRoleKeyIDs).
		if _, known := schemeByName(k.Scheme); known {
			if _, err := CryptoPublicKey(k); err != nil {
				v.add(role, file, RuleKeyType, fmt.Sprintf("%s: key %s: %v", label, short(id), err),
					"replace the key entry with one rootkeeper writes from the device (keytype, scheme and key must agree)")
			}
		}
		got, err := KeyID(k)
		if err != nil {
			v.add(role, file, RuleKeyID, fmt.Sprintf("%s: key %s: %v", label, short(id), err), "")
			continue
		}
		if got != id {
			v.add(role, file, RuleKeyID, fmt.Sprintf("%s: key id %s does not match its key (recomputed %s)", label, short(id), short(got)),
				"strict clients reject this key; list the key under its real id and re-sign")
		}
	}
}

// checkRoleKeyIDs checks that a role's key ids exist, are distinct keys and
// can reach the threshold.
func (v *verifier) checkRoleKeyIDs(role, file, label string, keys map[string]*metadata.Key, ids []string, threshold int) {
	prints := map[string]string{}
	usable := 0
	for _, id := range ids {
		k := keys[id]
		if k == nil {
			v.add(role, file, RuleKeyMissing, fmt.Sprintf("%s: lists key id %s, which is not among the keys", label, short(id)),
				"add the key or remove the id; clients reject the role until then")
			continue
		}
		pub, err := CryptoPublicKey(k)
		if err != nil {
			if _, known := schemeByName(k.Scheme); !known {
				v.add(role, file, RuleKeyType, fmt.Sprintf("%s: key %s: %v", label, short(id), err),
					"clients that do not support this scheme cannot count its signatures")
			}
			continue
		}
		fp, err := fingerprint(pub)
		if err != nil {
			continue
		}
		if other, dup := prints[fp]; dup {
			if other == id {
				v.add(role, file, RuleKeyID, fmt.Sprintf("%s: lists key id %s twice", label, short(id)),
					"tuf-js refuses a role that lists a key id twice: list each key once")
				continue
			}
			v.add(role, file, RuleKeyID, fmt.Sprintf("%s: key ids %s and %s are the same public key", label, short(other), short(id)),
				"some clients count one key twice toward the threshold: list each key once")
			continue
		}
		prints[fp] = id
		usable++
	}
	if threshold < 1 {
		v.add(role, file, RuleThreshold, fmt.Sprintf("%s: threshold %d: it must be at least 1", label, threshold), "")
	} else if usable < threshold {
		v.add(role, file, RuleThreshold, fmt.Sprintf("%s: threshold %d can never be met: only %d usable distinct keys", label, threshold, usable),
			"add keys or lower the threshold")
	}
}

// checkSigned counts the valid signatures of a role (md, whose signed part
// is signed) and reports a shortfall.
func (v *verifier) checkSigned(role, file, label, from string, md, signed any, sigs []metadata.Signature, keys map[string]*metadata.Key, ids []string, threshold int) int {
	payload, err := v.c.canonical(md, signed)
	if err != nil {
		v.add(role, file, RuleParse, fmt.Sprintf("%s: cannot be encoded as canonical JSON: %v", label, err), "")
		return 0
	}
	n := v.countSigs(role, file, label, sigs, payload, keys, ids)
	if n < threshold {
		v.add(role, file, RuleThreshold, fmt.Sprintf("%s: signed by %d of %d required keys of %s", label, n, threshold, from),
			"collect signatures from its keys: "+shortList(ids))
	}
	return n
}

func (v *verifier) countSigs(role, file, label string, sigs []metadata.Signature, payload []byte, keys map[string]*metadata.Key, ids []string) int {
	n, lax := countValid(v.c, sigs, payload, keys, ids)
	for _, id := range lax {
		v.add(role, file, RuleSigEncoding, fmt.Sprintf("%s: the signature by key %s is raw r||s, not ASN.1 DER", label, short(id)),
			"go-tuf accepts it but python-tuf and tuf-js do not: re-sign with a signer that returns DER")
	}
	return n
}

func (v *verifier) checkSpec(role, file, label, spec string) {
	major, _, _ := strings.Cut(spec, ".")
	switch {
	case major != "1":
		v.add(role, file, RuleSpecVersion, fmt.Sprintf("%s: spec_version %q is not TUF 1.x", label, spec), "clients reject other major versions")
	case !specRE.MatchString(spec):
		v.add(role, file, RuleSpecVersion, fmt.Sprintf("%s: spec_version %q is not of the form 1.N or 1.N.N", label, spec),
			"tuf-js refuses any other form: write the spec version go-tuf writes ("+metadata.SPECIFICATION_VERSION+")")
	}
}

// checkExpiry reports a role expired at the reference time as tuf-js
// sees it: expired from its expiry on (go-tuf: only after it), read to the
// millisecond (JavaScript dates).
func (v *verifier) checkExpiry(role, file, label string, expires time.Time) {
	if !v.at.Before(expires.Truncate(time.Millisecond)) {
		v.add(role, file, RuleExpired, fmt.Sprintf("%s: expired at %s", label, expires.UTC().Format(time.RFC3339)),
			fmt.Sprintf("checked at %s: re-sign it with a later expiry", v.at.UTC().Format(time.RFC3339)))
		return
	}
	m, ok := v.opts.Margins[role]
	if !ok {
		m, ok = v.opts.Margins["*"]
	}
	if ok && expires.Before(v.at.Add(m)) {
		v.add(role, file, RuleMargin, fmt.Sprintf("%s: expires in less than %s (at %s)", label, fmtDuration(m), expires.UTC().Format(time.RFC3339)),
			"re-sign it with a later expiry before publishing")
	}
}

// checkTargetFiles checks every listed target file against its length and hashes.
func (v *verifier) checkTargetFiles() error {
	consistent := v.finalRoot().md.Signed.ConsistentSnapshot
	type role struct {
		name string
		md   *metadata.Metadata[metadata.TargetsType]
	}
	var roles []role
	if v.s.targets != nil {
		roles = append(roles, role{metadata.TARGETS, v.s.targets})
	}
	for _, d := range v.s.delegated {
		roles = append(roles, role{d.name, d.md})
	}
	for _, r := range roles {
		for _, p := range slices.Sorted(maps.Keys(r.md.Signed.Targets)) {
			tf := r.md.Signed.Targets[p]
			if tf == nil {
				v.add(r.name, "", RuleParse, fmt.Sprintf("%s: target %q has no length and hashes", r.name, p), "")
				continue
			}
			if checkTargetPath(p) != nil {
				continue // reported by checkTargetEntries
			}
			external := IsExternal(tf) // external.go: clients check only its metadata
			if external {
				if err := CheckExternalHashes(tf.Length, tf.Hashes); err != nil {
					v.add(r.name, "", RuleTargetFile, fmt.Sprintf("%s: external target %q: %v", r.name, p, err), "re-add it with its sha256 and length")
					continue
				}
			}
			for _, name := range TargetFilePaths(p, tf, consistent) {
				if _, err := fs.Stat(v.fsys, name); external && errors.Is(err, fs.ErrNotExist) {
					continue // no file, as marked; one that is there must match
				}
				msg, err := checkTargetFile(v.fsys, name, tf)
				if err != nil {
					return err
				}
				if msg != "" {
					v.add(r.name, name, RuleTargetFile, fmt.Sprintf("%s: target %q: %s", r.name, p, msg),
						"restore the file or update the target's entry (then snapshot and timestamp)")
				}
			}
		}
	}
	return nil
}

// checkTargetFile returns what is wrong with one target file, or "".
func checkTargetFile(fsys fs.FS, name string, tf *metadata.TargetFiles) (string, error) {
	f, err := fsys.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return name + " is missing", nil
	}
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", name, err)
	}
	defer f.Close()
	hashers := map[string]hash.Hash{}
	var writers []io.Writer
	for alg := range tf.Hashes {
		var h hash.Hash
		switch alg {
		case "sha256":
			h = sha256.New()
		case "sha512":
			h = sha512.New()
		default:
			continue
		}
		hashers[alg] = h
		writers = append(writers, h)
	}
	if len(hashers) == 0 {
		return "no sha256 or sha512 hash to check it with", nil
	}
	n, err := io.Copy(io.MultiWriter(writers...), io.LimitReader(f, tf.Length+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	if n != tf.Length {
		if n > tf.Length {
			return fmt.Sprintf("%s is longer than the %d bytes listed", name, tf.Length), nil
		}
		return fmt.Sprintf("%s has %d bytes, %d listed", name, n, tf.Length), nil
	}
	for _, alg := range slices.Sorted(maps.Keys(hashers)) {
		if got := hashers[alg].Sum(nil); hex.EncodeToString(got) != tf.Hashes[alg].String() {
			return fmt.Sprintf("%s has %s %s, %s listed", name, alg, short(hex.EncodeToString(got)), short(tf.Hashes[alg].String())), nil
		}
	}
	return "", nil
}

// walk runs go-tuf's client rules over the scanned files and reports the
// first rule each file breaks. It returns the error that stopped the walk.
func (v *verifier) walk(ref time.Time) error {
	tm, err := newClient(v.c, v.trusted, ref)
	if err != nil {
		v.clientProblem(metadata.ROOT, v.tfile, rootLabel(v.chain[0].md), err)
		return err
	}
	s := v.s
	for _, r := range s.roots {
		if err := tm.updateRoot(s.raw[r.path]); err != nil {
			v.clientProblem(metadata.ROOT, r.path, rootLabel(r.md), err)
			return err
		}
	}
	if s.timestamp == nil {
		return nil
	}
	err = tm.updateTimestamp(s.raw[s.tsPath])
	if err != nil {
		if tm.tm.Timestamp == nil && errors.Is(err, &metadata.ErrExpiredMetadata{}) {
			final := v.finalRoot()
			v.clientProblem(metadata.ROOT, final.path, rootLabel(final.md), err)
		} else {
			v.clientProblem(metadata.TIMESTAMP, s.tsPath, metadata.TIMESTAMP, err)
		}
		return err
	}
	if s.snapshot == nil {
		return nil
	}
	if err := tm.updateSnapshot(s.raw[s.snPath], false); err != nil {
		v.clientProblem(metadata.SNAPSHOT, s.snPath, metadata.SNAPSHOT, err)
		return err
	}
	if s.targets == nil {
		return nil
	}
	if err := tm.updateTargets(s.raw[s.tgPath]); err != nil {
		v.clientProblem(metadata.TARGETS, s.tgPath, metadata.TARGETS, err)
		return err
	}
	var first error
	for _, d := range s.delegated {
		if tm.tm.Targets[d.delegator] == nil {
			continue // its delegator failed: not reached
		}
		err := tm.updateDelegated(s.raw[d.path], d.name, d.delegator)
		if err != nil {
			v.clientProblem(d.name, d.path, d.name, err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// prewalk takes, before the scan, the steps of a fresh go-tuf client
// over the files it reads first — the trusted root, the newer root
// versions, the timestamp, the snapshot it names and targets — at the
// reference time, through the cache: the client of CheckClients
// (memClient.refresh), in go-tuf's updater order. Each step parses its
// file with go-tuf's parser and the cache keeps that parse (Cache.adopt)
// and the step's outcome, so the scan's parse of the same bytes and walk's
// same steps are not done again: each of these files is decoded once
// instead of twice. It decides nothing (its error is dropped): it stops at
// the first file that is missing, too large or refused, and the scan and
// walk then read, parse and check everything as before.
func (v *verifier) prewalk() {
	if v.c == nil {
		return
	}
	(&memClient{cache: v.c, root: v.trusted}).refresh(v.fsys, v.at) //nolint:errcheck // decides nothing, see above
}

func (v *verifier) clientProblem(role, file, label string, err error) {
	rule := RuleClient
	switch {
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		rule = RuleThreshold
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		rule = RuleExpired
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		rule = RuleLengthHash
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		rule = RuleVersion
	}
	if v.has(file, fatal...) || (rule != RuleClient && v.has(file, rule)) {
		return
	}
	v.add(role, file, rule, fmt.Sprintf("%s: rejected by the TUF client rules: %v", label, err), "")
}

// safe turns a panic in the client library into an error.
func safe(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the TUF client library crashed on this metadata (%v): clients will fail too", r)
		}
	}()
	return f()
}

func shortList(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return strings.Join(out, ", ")
}

// fmtDuration writes whole days as "7d" and other durations as Go does.
func fmtDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
