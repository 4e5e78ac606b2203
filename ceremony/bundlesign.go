package ceremony

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony/bundle"
)

// ReadBundles reads and checks bundle files: one file, or several copies
// of one bundle whose signatures are merged. It needs no repository.
func ReadBundles(paths []string) (*bundle.Checked, error) {
	var copies []*bundle.Checked
	for _, p := range paths {
		b, err := bundle.Read(p)
		if err != nil {
			return nil, err
		}
		c, err := bundle.Check(p, b)
		if err != nil {
			return nil, err
		}
		copies = append(copies, c)
	}
	if len(copies) == 1 {
		return copies[0], nil
	}
	return bundle.Merge(copies)
}

// SignBundleResult says what rootkeeper sign added to a bundle.
type SignBundleResult struct {
	File     string            `json:"file"`
	Bundle   string            `json:"bundle"`
	Signed   []BundleSignature `json:"signed"`
	Complete bool              `json:"complete"`
	Missing  []string          `json:"missing,omitempty"`
	Summary  *bundle.Summary   `json:"summary"`
	checked  *bundle.Checked
}

// BundleSignature is one signature added.
type BundleSignature struct {
	KeyID  string   `json:"keyid"`
	Device string   `json:"device,omitempty"`
	Roles  []string `json:"roles"`
}

// signingKey is a key opened for a bundle and the roles it will sign.
type signingKey struct {
	key   *Key
	roles []*bundle.CheckedRole
}

// SignBundle is rootkeeper sign, on the officer's (offline) machine: it
// checks the bundle at path by itself — not expired, every previous file
// and payload as recorded, every signature valid — opens each key of
// uris and refuses one no role wants, shows the summary recomputed from
// the payloads and what each key will sign, asks, signs, verifies each
// signature at once, logs it in the bundle and writes the bundle to out
// (path when empty) atomically. No repository, network or git is needed.
func (s *Session) SignBundle(ctx context.Context, path, out string, uris []string) (*SignBundleResult, error) {
	if err := checkURIs(uris...); err != nil {
		return nil, err
	}
	b, err := bundle.Read(path)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if err := b.Expired(path, now); err != nil {
		return nil, err
	}
	c, err := bundle.Check(path, b)
	if err != nil {
		return nil, err
	}
	keys, err := s.bundleKeys(ctx, c, uris)
	if err != nil {
		return nil, err
	}
	if out == "" {
		out = path
	}
	res := &SignBundleResult{File: out, Bundle: b.ID, checked: c}
	if len(keys) == 0 {
		return nil, &RepoError{Detail: fmt.Sprintf("signing bundle %s: every role that wants these keys has their signature already; nothing to sign", path),
			HintText: "rootkeeper show " + path + " lists who is still needed"}
	}
	if err := s.confirm(c.Summarize(now).Text(now) + "\n\n" + signPlanText(keys)); err != nil {
		return nil, err
	}
	for _, sk := range keys {
		sig := BundleSignature{KeyID: sk.key.ID(), Device: deviceIdentity(sk.key)}
		for _, cr := range sk.roles {
			s.progress("signing %s v%d with %s (%s)", cr.Role.Role, cr.Version, short(sk.key.ID()), objectOf(sk.key.URI))
			raw, err := sk.key.TUF.SignMessage(bytes.NewReader(cr.Payload)) // verified against the key before it returns
			if err != nil {
				return nil, fmt.Errorf("%s: %w", cr.Role.Role, err)
			}
			if err := c.AddSignature(cr, sk.key.ID(), raw); err != nil {
				return nil, err
			}
			sig.Roles = append(sig.Roles, cr.Role.Role)
		}
		b.Log = append(b.Log, logEntry(bundle.EventSigned, now, sig.KeyID, sig.Device, sig.Roles))
		res.Signed = append(res.Signed, sig)
	}
	if err := writeBundle(b, out); err != nil {
		return nil, err
	}
	res.Summary = c.Summarize(now)
	res.Complete, res.Missing = c.Complete(), res.Summary.Missing()
	return res, nil
}

// bundleKeys opens each key and pairs it with the roles that want its
// signature and do not have it yet; a key no role wants is refused.
func (s *Session) bundleKeys(ctx context.Context, c *bundle.Checked, uris []string) ([]signingKey, error) {
	var out []signingKey
	seen := map[string]bool{}
	for _, uri := range uris {
		k, err := s.Open(ctx, uri)
		if err != nil {
			return nil, err
		}
		crs := c.Wants(k.ID())
		if len(crs) == 0 {
			return nil, c.WrongKey(k.ID(), objectOf(uri))
		}
		if seen[k.ID()] {
			continue
		}
		seen[k.ID()] = true
		sk := signingKey{key: k}
		for _, cr := range crs {
			if cr.HasSigned(k.ID()) {
				s.progress("%s v%d: %s has signed already", cr.Role.Role, cr.Version, short(k.ID()))
				continue
			}
			sk.roles = append(sk.roles, cr)
		}
		if len(sk.roles) > 0 {
			out = append(out, sk)
		}
	}
	return out, nil
}

func signPlanText(keys []signingKey) string {
	var w strings.Builder
	w.WriteString("This machine signs:")
	for _, sk := range keys {
		var what []string
		for _, cr := range sk.roles {
			what = append(what, fmt.Sprintf("%s v%d", cr.Role.Role, cr.Version))
		}
		dev := deviceIdentity(sk.key)
		if dev == "" {
			dev = objectOf(sk.key.URI)
		}
		fmt.Fprintf(&w, "\n  %s  (%s): %s", short(sk.key.ID()), dev, strings.Join(what, ", "))
	}
	return w.String()
}

// logEntry is a bundle log entry made on this machine.
func logEntry(event string, now time.Time, keyID, device string, roleNames []string) bundle.LogEntry {
	e := bundle.LogEntry{Time: now.UTC().Truncate(time.Second), Event: event, KeyID: keyID, Device: device, Roles: roleNames, Version: Version()}
	if u, err := user.Current(); err == nil {
		e.Operator = u.Username
	}
	e.Host, _ = os.Hostname()
	return e
}
