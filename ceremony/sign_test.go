package ceremony

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// memRepo is a new repository in memory whose keys live in a memKeys:
// root 1 of 1, targets 2 of 3, snapshot and timestamp 1 of 1.
type memRepo struct {
	ks   *memKeys
	s    *Session
	repo *roles.Repo
	pol  *Policy
	uris map[string][]string // role → key URIs
	ids  map[string][]string // role → key ids
}

func newMemRepo(t *testing.T) *memRepo {
	t.Helper()
	m := &memRepo{ks: newMemKeys(), uris: map[string][]string{}, ids: map[string][]string{}}
	m.s = &Session{Keys: m.ks, Yes: true, UI: &recUI{}}
	counts := map[string]int{RoleRoot: 1, RoleTargets: 3, RoleSnapshot: 1, RoleTimestamp: 1}
	thresholds := map[string]int{RoleRoot: 1, RoleTargets: 2, RoleSnapshot: 1, RoleTimestamp: 1}
	now := time.Now().UTC().Truncate(time.Second)
	b := roles.Bootstrap{Expires: map[string]time.Time{}, Now: now, ConsistentSnapshot: true}
	m.pol = &Policy{Version: 1, Roles: map[string]RolePolicy{}}
	for _, r := range TopLevelRoles {
		rk := roles.RoleKeys{Threshold: thresholds[r]}
		for i := 0; i < counts[r]; i++ {
			uri := "pkcs11:token=" + r + ";object=k" + string(rune('a'+i))
			k := m.ks.add(t, uri, i == 1)
			tk, err := roles.PublicKey(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			id, _ := roles.KeyID(tk)
			rk.Keys = append(rk.Keys, tk)
			m.uris[r] = append(m.uris[r], uri)
			m.ids[r] = append(m.ids[r], id)
		}
		b.Expires[r] = now.Add(30 * 24 * time.Hour)
		m.pol.Roles[r] = RolePolicy{Expires: Duration(30 * 24 * time.Hour), Keys: m.uris[r]}
		switch r {
		case RoleRoot:
			b.Root = rk
		case RoleTargets:
			b.Targets = rk
		case RoleSnapshot:
			b.Snapshot = rk
		case RoleTimestamp:
			b.Timestamp = rk
		}
	}
	repo, err := roles.New(b)
	if err != nil {
		t.Fatal(err)
	}
	m.repo = repo
	return m
}

func (m *memRepo) obj(role string, i int) string { return objectOf(m.uris[role][i]) }

// change plans signing the given roles of the new repository, snapshot
// and timestamp following.
func (m *memRepo) change(t *testing.T, rs ...string) *Change {
	t.Helper()
	c := &Change{Op: "test", Repo: m.repo, Policy: m.pol, At: time.Now().UTC()}
	for _, r := range rs {
		st, err := c.roleStep(r)
		if err != nil {
			t.Fatal(err)
		}
		c.Steps = append(c.Steps, st)
	}
	return c
}

func TestSignThresholdMet(t *testing.T) {
	m := newMemRepo(t)
	c := m.change(t, RoleRoot, RoleTargets)
	c.Steps[1].All = false // as hashed bins: stop at the threshold
	tally, err := m.s.Sign(context.Background(), c, m.s.Local())
	if err != nil {
		t.Fatal(err)
	}
	if !tally.Met() {
		t.Fatalf("tally not met: %+v", tally)
	}
	// targets is 2 of 3: the third key is not asked.
	if got := m.repo.Targets.Signatures; len(got) != 2 {
		t.Fatalf("targets has %d signatures, want 2", len(got))
	}
	if n := m.ks.signs[m.obj(RoleTargets, 2)]; n != 0 {
		t.Fatalf("the third targets key signed %d times", n)
	}
	reqs, _ := m.repo.Needed(RoleTargets)
	if !reqs[0].Met() {
		t.Fatalf("roles.Needed says targets is not met: %+v", reqs)
	}
}

func TestSignAbsentKeyOthersGoOn(t *testing.T) {
	m := newMemRepo(t)
	m.ks.absent[m.obj(RoleTargets, 0)] = true // the first targets key's token is not plugged in
	c := m.change(t, RoleTargets)
	tally, err := m.s.Sign(context.Background(), c, m.s.Local())
	if err != nil {
		t.Fatal(err)
	}
	rt := tally.Roles[0]
	if len(rt.Absent) != 1 || rt.Absent[0].URI != m.uris[RoleTargets][0] {
		t.Fatalf("absent = %+v, want the first targets key", rt.Absent)
	}
	if !slices.Equal(rt.Signed, sorted(m.ids[RoleTargets][1:])) {
		t.Fatalf("signed by %v, want the two other keys", rt.Signed)
	}
}

func TestSignThresholdUnmetNamesMissing(t *testing.T) {
	m := newMemRepo(t)
	m.ks.absent[m.obj(RoleTargets, 0)], m.ks.absent[m.obj(RoleTargets, 1)] = true, true
	c := m.change(t, RoleTargets)
	_, err := m.s.Sign(context.Background(), c, m.s.Local())
	var te *ThresholdError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a ThresholdError", err)
	}
	if te.Have != 1 || te.Need != 2 || len(te.Missing) != 2 || len(te.Absent) != 2 {
		t.Fatalf("ThresholdError = %+v", te)
	}
	for _, id := range m.ids[RoleTargets][:2] {
		if !slices.ContainsFunc(te.Missing, func(k MissingKey) bool { return k.KeyID == id }) {
			t.Errorf("missing does not name %s: %+v", short(id), te.Missing)
		}
	}
	if h := te.Hint(); !strings.Contains(h, m.uris[RoleTargets][0]) {
		t.Errorf("hint does not name the absent device: %s", h)
	}
	// Partial: no error, the tally says what is missing.
	c.Partial = true
	tally, err := m.s.Sign(context.Background(), c, m.s.Local())
	if err != nil || tally.Met() {
		t.Fatalf("partial: err %v, met %v", err, tally.Met())
	}
}

func TestSignSameKeyTwiceCountsOnce(t *testing.T) {
	m := newMemRepo(t)
	k := m.ks.keys[m.obj(RoleTargets, 0)]
	tk, _ := roles.PublicKey(k.Public())
	alias := *tk
	alias.Type = "ecdsa-sha2-nistp256" // the older keytype: another key id, the same key
	aliasID, err := roles.KeyID(&alias)
	if err != nil {
		t.Fatal(err)
	}
	id := m.ids[RoleTargets][0]
	if aliasID == id {
		t.Fatal("alias has the same key id")
	}
	c := &Change{Repo: m.repo, Policy: m.pol}
	st := &Step{Role: RoleTargets, Needs: []Need{{Of: "test", Threshold: 2, KeyIDs: []string{id, aliasID},
		Keys: map[string]*metadata.Key{id: tk, aliasID: &alias}}}}
	payload, _ := c.Payload(RoleTargets)
	req := &SignRequest{Change: c, Step: st, Role: RoleTargets, Payload: payload, signed: map[string]bool{}, fps: map[string]bool{}}
	signer, _ := roles.NewSigner(k)
	sig, err := signer.SignPayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Add(id, sig); err != nil {
		t.Fatal(err)
	}
	if err := req.Add(aliasID, sig); err != nil {
		t.Fatal(err)
	}
	if n := req.tally()[0]; n.Have != 1 || n.Met() {
		t.Fatalf("one key under two ids counted %d times", n.Have)
	}
	// A signature by a key the role does not trust, and a changed payload,
	// are refused.
	var se *SignatureError
	if err := req.Add(m.ids[RoleRoot][0], sig); !errors.As(err, &se) {
		t.Fatalf("untrusted key: err = %v", err)
	}
	req.Payload = append([]byte(nil), payload...)
	req.Payload[10] ^= 1
	if err := req.Add(id, sig); !errors.As(err, &se) {
		t.Fatalf("changed payload: err = %v", err)
	}
}

func TestSignMismatchedDevice(t *testing.T) {
	m := newMemRepo(t)
	m.pol.Roles[RoleTargets] = RolePolicy{Keys: []string{m.uris[RoleRoot][0]}} // the root key listed for targets
	c := m.change(t, RoleTargets)
	_, err := m.s.Sign(context.Background(), c, m.s.Local())
	var me *MismatchError
	if !errors.As(err, &me) || me.KeyID != m.ids[RoleRoot][0] {
		t.Fatalf("err = %v, want a MismatchError for the root key", err)
	}
}

func TestSignLastKeyOnlyIfNeeded(t *testing.T) {
	m := newMemRepo(t)
	c := m.change(t, RoleTargets)
	c.Steps[0].Last = []string{m.ids[RoleTargets][0]}
	if _, err := m.s.Sign(context.Background(), c, m.s.Local()); err != nil {
		t.Fatal(err)
	}
	if m.ks.signs[m.obj(RoleTargets, 0)] != 0 {
		t.Fatal("the held-back key signed although the others met the threshold")
	}
	m2 := newMemRepo(t)
	m2.ks.absent[m2.obj(RoleTargets, 1)] = true
	c2 := m2.change(t, RoleTargets)
	c2.Steps[0].Last = []string{m2.ids[RoleTargets][0]}
	if _, err := m2.s.Sign(context.Background(), c2, m2.s.Local()); err != nil {
		t.Fatal(err)
	}
	if m2.ks.signs[m2.obj(RoleTargets, 0)] != 1 {
		t.Fatal("the held-back key did not sign when the threshold needed it")
	}
}

func TestSignFollowAndAll(t *testing.T) {
	m := newMemRepo(t)
	c := m.change(t, RoleRoot, RoleTargets)
	pub, err := c.publishSteps()
	if err != nil {
		t.Fatal(err)
	}
	c.Steps = append(c.Steps, pub...)
	if _, err := m.s.Sign(context.Background(), c, m.s.Local()); err != nil {
		t.Fatal(err)
	}
	if n := len(m.repo.Targets.Signatures); n != 3 {
		t.Fatalf("All: targets has %d signatures, want all 3", n)
	}
	for _, r := range TopLevelRoles {
		reqs, err := m.repo.Needed(r)
		if err != nil || !reqs[0].Met() {
			t.Fatalf("%s: %v %+v", r, err, reqs)
		}
	}
	if m.repo.Snapshot.Signed.Meta["targets.json"].Version != m.repo.Targets.Signed.Version {
		t.Fatal("snapshot was not made from the signed targets")
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// Signatures already on a role (brought by a bundle, an earlier pass) all
// count: attaching one rewrites the role's signature list, which must not
// make the loop over it skip the next one.
func TestSignKeepsEverySignatureAlreadyMade(t *testing.T) {
	m := newMemRepo(t)
	payload, err := m.repo.Payload(RoleTargets)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		signer, _ := roles.NewSigner(m.ks.keys[m.obj(RoleTargets, i)])
		sig, err := signer.SignPayload(payload)
		if err != nil {
			t.Fatal(err)
		}
		m.repo.Targets.Signatures = append(m.repo.Targets.Signatures, metadata.Signature{KeyID: m.ids[RoleTargets][i], Signature: sig})
	}
	for i := 0; i < 3; i++ {
		m.ks.absent[m.obj(RoleTargets, i)] = true // only the signatures already made can count
	}
	c := &Change{Op: "test", Repo: m.repo, Policy: m.pol, At: time.Now().UTC(), Partial: true}
	st, err := c.roleStep(RoleTargets)
	if err != nil {
		t.Fatal(err)
	}
	c.Steps = []*Step{st}
	tally, err := m.s.Sign(context.Background(), c, m.s.Local())
	if err != nil {
		t.Fatal(err)
	}
	rt := tally.Roles[0]
	if !slices.Equal(rt.Signed, sorted(m.ids[RoleTargets])) || rt.Needs[0].Have != 3 {
		t.Fatalf("signed by %v (have %d), want all three keys that signed before", rt.Signed, rt.Needs[0].Have)
	}
	if n := len(m.repo.Targets.Signatures); n != 3 {
		t.Fatalf("targets carries %d signatures, want 3", n)
	}
}
