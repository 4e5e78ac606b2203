package hsm

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	u, err := ParseURI("pkcs11:token=root%20a;object=root-1;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin")
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "pkcs11" {
		t.Errorf("scheme = %q", u.Scheme)
	}
	for name, want := range map[string]string{"token": "root a", "object": "root-1", "id": "\x01\x02"} {
		if got, _ := u.Path(name); got != want {
			t.Errorf("path %s = %q, want %q", name, got, want)
		}
	}
	if got, _ := u.Query("module-path"); got != "/usr/lib/softhsm/libsofthsm2.so" {
		t.Errorf("module-path = %q", got)
	}
	if got := u.Object(); got != "pkcs11:token=root%20a;object=root-1;id=%01%02" {
		t.Errorf("Object() = %q", got)
	}
	again, err := ParseURI(u.String())
	if err != nil || again.String() != u.String() {
		t.Errorf("round trip: %q, %v", again, err)
	}
}

func TestParseURIRejects(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "missing scheme"},
		{"token=a", "missing scheme"},
		{"pkcs11:token=a;token=b", "appears twice"},
		{"pkcs11:token", "has no value"},
		{"pkcs11:token=a;;object=b", "empty attribute"},
		{"pkcs11:token=%zz", "percent-encoding"},
		{"pkcs11:token=a?pin-value=123456", "pin-value is not accepted"},
		{"pkcs11:token=a;pin-value=123456", "pin-value is not accepted"},
		{"pk cs:token=a", "invalid scheme"},
	} {
		_, err := ParseURI(tc.in)
		var ue *URIError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURI(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "123456") {
			t.Errorf("ParseURI(%q) error repeats the PIN: %v", tc.in, err)
		}
	}
}

func FuzzParseURI(f *testing.F) {
	f.Add("pkcs11:token=root;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/run/pin")
	f.Add("yubikey:serial=12345678;slot=9c?pin-source=file:/run/pin&management-key-source=/run/mgm")
	f.Add("pkcs11:token=a%20b;id=%00%ff")
	f.Add("pkcs11:")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if strings.Contains(s, "pin-value=") && strings.Contains(err.Error(), "pin-value=") && !strings.Contains(err.Error(), "pin-value=***") {
				t.Fatalf("error repeats a pin-value: %v", err)
			}
			return
		}
		// A parsed URI formats to text that parses to the same attributes.
		v, err := ParseURI(u.String())
		if err != nil {
			t.Fatalf("reparse of %q (from %q): %v", u.String(), s, err)
		}
		if v.String() != u.String() {
			t.Fatalf("not stable: %q → %q", u.String(), v.String())
		}
		for _, n := range u.PathNames() {
			a, _ := u.Path(n)
			b, _ := v.Path(n)
			if a != b {
				t.Fatalf("path %s: %q vs %q", n, a, b)
			}
		}
	})
}
