package ceremony

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func readPlan(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParsePlan(t *testing.T) {
	p, err := ParsePlan("bootstrap.yaml", readPlan(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.Roles.Root.Threshold != 2 || len(p.Roles.Root.Keys) != 3 {
		t.Errorf("root = %+v", p.Roles.Root)
	}
	if p.Roles.Root.Expires.D() != 365*24*time.Hour {
		t.Errorf("root expires %v", p.Roles.Root.Expires)
	}
	if p.Roles.Timestamp.Window.D() != 6*24*time.Hour {
		t.Errorf("timestamp window %v", p.Roles.Timestamp.Window)
	}
	if !p.Consistent() || len(p.Delegations) != 1 || p.Delegations[0].Paths[0] != "releases/*" {
		t.Errorf("plan = %+v", p)
	}
}

// Each mistake is reported with the path of the field, and every mistake
// of a plan is reported at once.
func TestParsePlanErrors(t *testing.T) {
	good := string(readPlan(t))
	for _, tc := range []struct {
		name, old, new string
		want           []string
	}{
		{"unknown field", "consistent_snapshot: true", "consistent_snapshot: true\nconsistnt: false", []string{"line 6: unknown field \"consistnt\""}},
		{"threshold zero", "threshold: 2", "threshold: 0", []string{"roles.root.threshold: must be at least 1 (got 0)"}},
		{"threshold above keys", "threshold: 2", "threshold: 4", []string{"roles.root.threshold: 4 is more than the 3 keys listed"}},
		{"same key twice", "object=root?pin-source=/run/pins/b", "object=root?pin-source=/run/pins/a\n      - pkcs11:token=root-a;object=root", []string{"roles.root.keys[2]: the same key as roles.root.keys[0]"}},
		{"same device", "token=root-b;object=root", "token=root-a;object=root2", []string{"roles.root.keys[1]: on the same device as roles.root.keys[0]"}},
		{"bad uri", "pkcs11:token=tagging;object=targets?pin-source=/run/pins/t", "kms:/tmp/key.pem", []string{"roles.targets.keys[0]", "not a hardware key URI"}},
		{"export for snapshot", "pkcs11:token=online;object=snapshot?pin-source=/run/pins/o", "file:online.key.json", []string{"roles.snapshot.keys[0]", "snapshot and timestamp keys are the custodian's online keys"}},
		{"export named twice", `pkcs11:token=tagging;object=targets?pin-source=/run/pins/t"`, `file:t.key.json", "file:t.key.json"`, []string{"roles.targets.keys[1]: the same key as roles.targets.keys[0]"}},
		{"pin in uri", "pin-source=/run/pins/t\" ]\n  snapshot", "pin-value=1234\" ]\n  snapshot", []string{"roles.targets.keys[0]: pin-value is not accepted"}},
		{"bad duration", "expires: 90d", "expires: 90 days", []string{"line", "invalid duration"}},
		{"window too long", "window: 6d", "window: 8d", []string{"roles.timestamp.window: 8d is not shorter than expires (7d)"}},
		{"no paths", "paths: [ \"releases/*\" ]", "paths: []", []string{"delegations[0].paths: at least one path pattern"}},
		{"bad role name", "name: releases", "name: Releases!", []string{"delegations[0].name"}},
		{"wrong ceremony", "ceremony: bootstrap", "ceremony: rotate", []string{"ceremony: must be \"bootstrap\""}},
		{"bad require", "require: hardware-born", "require: trust-me", []string{"require: must be"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("test bug: %q not in plan", tc.old)
			}
			_, err := ParsePlan("p.yaml", []byte(strings.Replace(good, tc.old, tc.new, 1)))
			var pe *PlanError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *PlanError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "1234") {
				t.Errorf("error repeats a PIN: %v", err)
			}
			if pe.Hint() == "" {
				t.Error("no hint")
			}
		})
	}
}

func TestParsePlanReportsAllProblems(t *testing.T) {
	bad := strings.Replace(strings.Replace(string(readPlan(t)), "threshold: 2", "threshold: 0", 1), "expires: 90d", "expires: 0d", 1)
	_, err := ParsePlan("p.yaml", []byte(bad))
	var pe *PlanError
	if !errors.As(err, &pe) || len(pe.Problems) < 2 {
		t.Fatalf("want every problem at once, got %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"365d": 365 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute} {
		d, err := ParseDuration(in)
		if err != nil || d.D() != want {
			t.Errorf("%s = %v, %v", in, d, err)
		}
	}
	for _, in := range []string{"", "d", "10y", "-1d", "1.5d", "99999999d"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if s := Duration(36 * time.Hour).String(); s != "1d12h" {
		t.Errorf("String = %s", s)
	}
}

func FuzzParsePlan(f *testing.F) {
	data, err := os.ReadFile("testdata/bootstrap.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("version: 1\nceremony: bootstrap\n"))
	f.Add([]byte("roles: {root: {keys: [\"pkcs11:token=a\"], threshold: 1, expires: 1d}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePlan("fuzz.yaml", data)
		if err != nil {
			var pe *PlanError
			if !errors.As(err, &pe) || len(pe.Problems) == 0 {
				t.Fatalf("error of the wrong kind: %T %v", err, err)
			}
			return
		}
		// A plan that parses is internally consistent.
		if probs := p.Validate(); len(probs) != 0 {
			t.Fatalf("accepted plan fails Validate: %v", probs)
		}
		for _, name := range TopLevelRoles {
			r := p.Role(name)
			if r.Threshold < 1 || r.Threshold > len(r.Keys) {
				t.Fatalf("%s: threshold %d with %d keys accepted", name, r.Threshold, len(r.Keys))
			}
		}
	})
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5*24*time.Hour - 30*time.Second: "5d",
		36 * time.Hour:                  "1d12h",
		-(90 * time.Minute):             "1h30m",
		40*time.Minute + 20*time.Second: "40m",
		7196 * time.Minute:              "5d",
	} {
		if got := Human(d); got != want {
			t.Errorf("Human(%v) = %q, want %q", d, got, want)
		}
	}
}

// Durations are bounded: no number overflows on its way to a time, and
// every duration prints in one style.
func TestDurationBounds(t *testing.T) {
	for _, in := range []string{"1000000d", "36501d", "9223372036854775807s", "100000000000000w", "36500d1s", "18446744073709551616s"} {
		if d, err := ParseDuration(in); err == nil || !strings.Contains(err.Error(), "more than 100 years") {
			t.Errorf("%q = %v, %v", in, d, err)
		}
	}
	if d, err := ParseDuration("36500d"); err != nil || d.D() != MaxDuration {
		t.Errorf("36500d = %v, %v", d, err)
	}
	for d, want := range map[time.Duration]string{
		365 * 24 * time.Hour:                 "365d",
		210*24*time.Hour + time.Minute:       "210d1m",
		90 * time.Minute:                     "1h30m",
		45 * time.Second:                     "45s",
		-(36 * time.Hour):                    "-1d12h",
		0:                                    "0s",
		24*time.Hour + time.Second + 500*1e6: "1d1s",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
		if d > 0 {
			back, err := ParseDuration(Duration(d).String())
			if err != nil || back.D() != d.Truncate(time.Second) {
				t.Errorf("%s reads back as %v, %v", Duration(d), back, err)
			}
		}
	}
	if got := Human(302401 * time.Minute); got != "210d" {
		t.Errorf("Human(302401m) = %q", got)
	}
}

// A plan's lifetimes are bounded by role.
func TestPlanLifetimeBounds(t *testing.T) {
	bad := strings.Replace(string(readPlan(t)), "expires: 7d", "expires: 300d", 1)
	_, err := ParsePlan("p.yaml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), "roles.timestamp.expires: 300d is longer than the maximum of 90d") {
		t.Errorf("300d timestamp: %v", err)
	}
}
