package ceremony

import (
	"fmt"
	"testing"
)

// The audit names the roles that trust each key: a set of hashed bins
// once, as PREFIX-*; a record no role trusts has none.
func TestAuditKeyRoles(t *testing.T) {
	now := []RoleStatus{
		{Role: RoleRoot, KeyIDs: []string{"r"}},
		{Role: RoleTargets, KeyIDs: []string{"t", "b"}},
		{Role: "bins-0", Bins: "bins", KeyIDs: []string{"b"}},
		{Role: "bins-1", Bins: "bins", KeyIDs: []string{"b"}},
	}
	got := auditKeys([]EvidenceCheck{{KeyID: "b"}, {KeyID: "r"}, {KeyID: "stale"}}, now)
	want := "[b:[targets bins-*] r:[root] stale:[]]"
	var parts []string
	for _, k := range got {
		parts = append(parts, fmt.Sprintf("%s:%v", k.KeyID, k.Roles))
	}
	if fmt.Sprint(parts) != want {
		t.Fatalf("got %v, want %s", parts, want)
	}
}
