package ceremony

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootkeeper/rootkeeper/ceremony/notary"
)

func testCollection() *notary.Collection {
	h := func(b byte) map[string][]byte {
		return map[string][]byte{"sha256": []byte(strings.Repeat(string(b), 32))}
	}
	return &notary.Collection{GUN: "registry.example.org/app", Source: "trust directory td", RootVersion: 2, ChainFrom: 1,
		RootCertIDs: []string{"bb"}, PinnedCertIDs: []string{"aa"},
		Roles: []*notary.Role{
			{Name: "targets", Targets: map[string]notary.Target{"latest": {Length: 10, Hashes: h('a')}}},
			{Name: "targets/releases", Paths: []string{""}, Targets: map[string]notary.Target{
				"v1.2": {Length: 20, Hashes: h('b'), Custom: []byte(`{"note":"x"}`)}, "latest": {Length: 10, Hashes: h('a')}}},
		}}
}

func planWith(delegations ...string) *Plan {
	p := &Plan{}
	for _, d := range delegations {
		p.Delegations = append(p.Delegations, DelegationPlan{Name: d, Paths: []string{"*"}})
	}
	return p
}

func TestNotaryInitial(t *testing.T) {
	in, err := NotaryInitial(testCollection(), planWith("releases"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Targets["targets"]) != 1 || len(in.Targets["releases"]) != 2 {
		t.Fatalf("targets %+v", in.Targets)
	}
	if err := in.check(planWith("releases")); err != nil {
		t.Fatal(err)
	}
	v12 := in.Targets["releases"][1]
	meta := v12.Digest.Custom["notary"].(map[string]any)
	if v12.Name != "v1.2" || v12.Digest.Length != 20 || meta["gun"] != "registry.example.org/app" || meta["role"] != "targets/releases" || meta["custom"].(map[string]any)["note"] != "x" {
		t.Errorf("v1.2: %+v %+v", v12, meta)
	}
	m := in.Details["notary_mapping"].(map[string]string)
	if m["targets/releases"] != "releases" || in.Details["notary_chain_from"] != 1 || !strings.Contains(in.Summary, "rotations v1 → v2 checked") {
		t.Errorf("details %v, summary %s", in.Details, in.Summary)
	}
	// Mapped elsewhere.
	if in, err := NotaryInitial(testCollection(), planWith("images"), map[string]string{"targets/releases": "images"}); err != nil || len(in.Targets["images"]) != 2 {
		t.Fatalf("--map: %v %+v", err, in)
	}
}

func TestNotaryInitialRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		col     func(*notary.Collection)
		plan    *Plan
		mapping map[string]string
		want    string
	}{
		{"no delegation", nil, planWith("other"), nil, `the collection has the delegation targets/releases, but the plan has no delegation "releases"`},
		{"nested", func(c *notary.Collection) { c.Roles[1].Name = "targets/releases/team" }, planWith("releases"), nil, "nested delegation targets/releases/team"},
		{"conflict", func(c *notary.Collection) {
			c.Roles[1].Targets["latest"] = notary.Target{Length: 11, Hashes: c.Roles[0].Targets["latest"].Hashes}
		},
			planWith("releases"), nil, `signs "latest" differently in targets and targets/releases`},
		{"unknown map", nil, planWith("releases"), map[string]string{"targets/ci": "releases"}, "--map targets/ci: the collection has no such role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCollection()
			if tc.col != nil {
				tc.col(c)
			}
			_, err := NotaryInitial(c, tc.plan, tc.mapping)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// Names a TUF repository cannot keep, and paths the plan does not cover.
	c := testCollection()
	c.Roles[1].Targets["v1%2F"] = notary.Target{Length: 1, Hashes: c.Roles[0].Targets["latest"].Hashes}
	in, err := NotaryInitial(c, planWith("releases"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.check(planWith("releases")); err == nil || !strings.Contains(err.Error(), "contains '%'") {
		t.Errorf("%%: %v", err)
	}
	narrow := planWith("releases")
	narrow.Delegations[0].Paths = []string{"x*"}
	in, _ = NotaryInitial(testCollection(), narrow, nil)
	if err := in.check(narrow); err == nil || !strings.Contains(err.Error(), `does not cover the imported target "latest"`) {
		t.Errorf("narrow paths: %v", err)
	}
}

func TestReadDigestList(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "list")
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	sum := strings.Repeat("ab", 32)
	list, err := ReadDigestList(write("# c\n\n{\"name\":\"a:1\",\"sha256\":\"sha256:" + sum + "\",\"length\":3}\n{\"name\":\"b:1\",\"sha256\":\"" + sum + "\",\"sha512\":\"" + sum + sum + "\",\"length\":0}\n"))
	if err != nil || len(list) != 2 || list[1].Digest.Length != 0 || len(list[1].Digest.Hashes["sha512"]) != 64 {
		t.Fatalf("%+v %v", list, err)
	}
	for _, tc := range []struct{ text, want string }{
		{`{"name":"a:1","sha256":"` + sum + `"}`, ":1: a:1: length is missing"},
		{`{"name":"a:1","length":1}`, ":1: a:1: sha256 is missing"},
		{`{"name":"a:1","sha256":"` + sum + `","length":1} {}`, ":1: more than one JSON value on the line"},
		{`{"name":"a:1","sha256":"` + sum + `","length":1}` + "\n" + `{"name":"a:1","sha256":"` + sum + `","length":1}`, ":2: a:1 is listed twice (also on line 1)"},
		{`{"name":"/a","sha256":"` + sum + `","length":1}`, "must be a clean relative path"},
		{`{"name":"a","sha256":"` + sum + `","length":-2}`, "length -2 is negative"},
		{"# nothing\n", "lists no targets"},
	} {
		if _, err := ReadDigestList(write(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.text, err, tc.want)
		}
	}
}
