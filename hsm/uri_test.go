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

// TestURIAttributes: each scheme's attributes are checked when the URI is
// parsed, so that a policy never carries a URI rootkeeper would misread.
func TestURIAttributes(t *testing.T) {
	for _, ok := range []string{
		"pkcs11:token=a;serial=1;manufacturer=m;model=x;object=k;id=%01;type=private?module-path=/m.so&pin-source=/p",
		"pkcs11:token=a;library-manufacturer=SoftHSM;library-description=Implementation%20of%20PKCS11;library-version=2.6",
		"pkcs11:token=a;library-version=2?module-name=softhsm2&pin-source=file://localhost/run/pin",
		"yubikey:serial=1;slot=9c?pin-source=/p&management-key-source=file:///m",
	} {
		if _, err := ParseURI(ok); err != nil {
			t.Errorf("ParseURI(%q): %v", ok, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"pkcs11:token=a?pin_source=/run/pin", `unknown query attribute "pin_source" (did you mean pin-source?)`},
		{"pkcs11:token=a?PIN-SOURCE=/run/pin", `(did you mean pin-source?)`},
		{"pkcs11:token=a;objekt=k", `unknown path attribute "objekt": pkcs11: URIs take token, serial,`},
		{"pkcs11:token=a;pin-source=/run/pin", "pin-source belongs in the query (after ?), not in the path"},
		{"pkcs11:token=a?object=k", "object belongs in the path (before ?), not in the query"},
		{"pkcs11:token=a;slot-id=3", "slot-id is not accepted: rootkeeper never selects a token by its slot"},
		{"pkcs11:token=a;slot-description=x", "slot-description is not accepted"},
		{"pkcs11:token=a;object=k;type=cert", "type=cert: a rootkeeper key is a private key"},
		{"pkcs11:token=a;object=k;type=public", "type=public"},
		{"pkcs11:token=a;library-version=two", `library-version="two"`},
		{"pkcs11:token=a;library-version=2.", `library-version="2."`},
		{"pkcs11:token=a?module-path=/m.so&module-name=m", "give only one"},
		{"pkcs11:token=a?pin-source=file://otherhost/run/pin", `names the host "otherhost"`},
		{"pkcs11:token=a?pin-source=", "pin-source: the value is empty"},
		{"yubikey:serial=1;slot=9c;object=k", `unknown path attribute "object": yubikey: URIs take serial, slot`},
		{"yubikey:serial=1?module-path=/m.so", `unknown query attribute "module-path"`},
		{"pkcs11:token=a?PIN-VALUE=4321", "PIN-VALUE is not accepted"},
		{"pkcs11:token=a;Pin-Value=4321", "Pin-Value is not accepted"},
		{"pkcs11:token=a?pin_value=4321", "pin_value is not accepted"},
	} {
		_, err := ParseURI(tc.in)
		var ue *URIError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURI(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

// TestURIErrorsHidePINs: whatever the mistake, an error about a URI never
// repeats a value that might be a PIN.
func TestURIErrorsHidePINs(t *testing.T) {
	for _, in := range []string{
		"pkcs11:token=a?pin-value=4321",
		"pkcs11:token=a?PIN-VALUE=4321",
		"pkcs11:token=a?Pin-Value=4321&pin-value=4321",
		"pkcs11:token=a;pin-value=4321;pin-value=4321",
		"pkcs11:token=a?pin-source=4321&x=1",
		"pkcs11:token=a?pin-source=4321&pin-source=4321",
		"pkcs11:token=a?pin_source=4321",
		"pkcs11:token=a?pin=4321",
		"pkcs11:token=a?4321",
		"pkcs11:token=a;4321",
		"pkcs11:token=a?4321=x",
		"pkcs11:token=a?pin-source=file://4321/x",
		"pkcs11:token=a?pin-source=file:4321",
		"pkcs11:token=a?pin-source=4321%0A",
		"pkcs11:token=a?pin-source=%zz4321",
		"4321:token=a",
		"yubikey:serial=1?management-key-source=4321&pin=1",
		"pk11:token=a?pin=4321",
	} {
		_, err := ParseURI(in)
		if err == nil {
			t.Errorf("ParseURI(%q) accepted", in)
			continue
		}
		if strings.Contains(err.Error(), "4321") || strings.Contains(HintOf(err), "4321") {
			t.Errorf("ParseURI(%q): the error repeats the PIN: %v", in, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"pkcs11:token=a;object=k?module-path=/m.so&pin-source=/run/pin": "pkcs11:token=a;object=k?module-path=/m.so&pin-source=/run/pin",
		"pkcs11:token=a?pin-source=4321":                                "pkcs11:token=a?pin-source=***",
		"pkcs11:token=a?pin-source=file:///run/pin":                     "pkcs11:token=a?pin-source=file:///run/pin",
		"pkcs11:token=a?PIN-VALUE=4321&module-path=/m.so":               "pkcs11:token=a?PIN-VALUE=***&module-path=/m.so",
		"pkcs11:token=a?pin_source=x&typo=y":                            "pkcs11:token=a?pin_source=***&typo=***",
		"pkcs11:token=a;4321":                                           "pkcs11:token=a;***",
		"pkcs11:token;object=k":                                         "pkcs11:token;object=k",
		"PKCS11:token=a":                                                "pkcs11:token=a",
		"4321":                                                          "***",
		"":                                                              "",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
