package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/ceremony/bundle"
	"github.com/rootkeeper/rootkeeper/roles"
)

// mkbundleMain is the golden scripts' rootkeeper-mkbundle: a signing
// bundle of a root change (keys added from key export files, keys
// removed by id prefix, a threshold) made straight from the repository
// with package bundle, with no device and no signature:
//
//	rootkeeper-mkbundle REPO OUT THRESHOLD [+EXPORT.json | -KEYID]...
func mkbundleMain(args []string) int {
	if err := mkbundle(args); err != nil {
		fmt.Fprintln(os.Stderr, "rootkeeper-mkbundle:", err)
		return 1
	}
	return 0
}

func mkbundle(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("usage: rootkeeper-mkbundle REPO OUT THRESHOLD [+EXPORT | -KEYID]...")
	}
	dir, out := args[0], args[1]
	threshold, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		return err
	}
	root := repo.Root()
	var keys []*metadata.Key
	for _, id := range root.Signed.Roles["root"].KeyIDs {
		keys = append(keys, root.Signed.Keys[id])
	}
	described := recordsOf(dir)
	for _, a := range args[3:] {
		switch a[0] {
		case '+':
			e, err := ceremony.ReadExportedKey(a[1:])
			if err != nil {
				return err
			}
			pub, err := roles.PublicKey(mustPEM(e.PublicKey))
			if err != nil {
				return err
			}
			keys = append(keys, pub)
			described[e.KeyID] = &bundle.Key{URI: e.URI, Device: e.Device, Evidence: e.Evidence, Algorithm: e.Algorithm}
		case '-':
			keys = slices.DeleteFunc(keys, func(k *metadata.Key) bool { // by key id prefix or a part of its URI
				id, _ := roles.KeyID(k)
				d := described[id]
				return strings.HasPrefix(id, a[1:]) || (d != nil && strings.Contains(d.URI, a[1:]))
			})
		}
	}
	if err := repo.BumpRole("root", time.Now().Add(365*24*time.Hour)); err != nil {
		return err
	}
	if err := repo.SetRoleKeys("root", roles.RoleKeys{Keys: keys, Threshold: threshold}); err != nil {
		return err
	}
	b, err := bundle.Build(os.DirFS(dir), bundle.Input{Name: "example.org/app", Operation: "rotate", Now: time.Now(),
		Inputs: map[string]any{"role": "root", "threshold": threshold},
		Roles:  []bundle.NewRole{{Role: "root", Signed: repo.Root().Signed, Version: repo.Root().Signed.Version}},
		Keys:   described})
	if err != nil {
		return err
	}
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	return ceremony.WriteFileAtomic(out, data)
}

func mustPEM(s string) any {
	k, err := parsePEMPublic(s)
	if err != nil {
		panic(err)
	}
	return k
}

// recordsOf describes the keys of dir/keys/*.json for a bundle.
func recordsOf(dir string) map[string]*bundle.Key {
	out := map[string]*bundle.Key{}
	files, _ := filepath.Glob(filepath.Join(dir, "keys", "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rec ceremony.KeyRecord
		if json.Unmarshal(data, &rec) != nil {
			continue
		}
		dev := ""
		if ev := rec.Evidence; ev != nil && ev.TokenSerial != "" {
			dev = fmt.Sprintf("%s %s serial %s", ev.TokenManufacturer, ev.TokenModel, ev.TokenSerial)
		} else if ev != nil && ev.Serial != 0 {
			dev = fmt.Sprintf("YubiKey serial %d", ev.Serial)
		}
		out[rec.KeyID] = &bundle.Key{URI: rec.URI, Algorithm: rec.Algorithm, Device: dev, Evidence: rec.Evidence}
	}
	return out
}

// editbundleCmd is the scripts' editbundle FILE WHAT: the edits an
// attacker or a broken copy makes to a bundle.
//
//	payload   one byte of root's payload changed (its expiry), its hash kept
//	rehash    one byte of root's payload changed and its hash recomputed
//	forge     as rehash, and the signatures dropped
//	version   the format version made 2
//	field     an unknown field added
//	dupsig    root's first signature listed twice
//	untrusted a valid signature over root's payload by a key root does
//	          not trust (made here with a new key) added
func editbundleCmd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: editbundle FILE payload|rehash|forge|version|field|dupsig|untrusted")
	}
	p := ts.MkAbs(args[0])
	data, err := os.ReadFile(p)
	ts.Check(err)
	var b map[string]any
	ts.Check(json.Unmarshal(data, &b))
	rolesList := b["roles"].([]any)
	role := rolesList[0].(map[string]any)
	switch args[1] {
	case "payload", "rehash", "forge":
		payload, err := base64.StdEncoding.DecodeString(role["payload"].(string))
		ts.Check(err)
		// The last digit of the expiry's seconds: still a valid root.
		i := strings.Index(string(payload), `"expires":"`) + len(`"expires":"`) + 18
		if payload[i] == '0' {
			payload[i] = '1'
		} else {
			payload[i] = '0'
		}
		role["payload"] = base64.StdEncoding.EncodeToString(payload)
		if args[1] != "payload" {
			role["payload_sha256"] = sha256hexOf(payload)
		}
		if args[1] == "forge" { // signatures that no longer verify go too
			role["signatures"] = []any{}
		}
	case "version":
		b["rootkeeper_bundle"] = 2
	case "field":
		b["caption"] = "nothing to see here"
	case "dupsig":
		sigs := role["signatures"].([]any)
		role["signatures"] = append(sigs, sigs[0])
	case "untrusted":
		payload, err := base64.StdEncoding.DecodeString(role["payload"].(string))
		ts.Check(err)
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ts.Check(err)
		signer, err := roles.NewSigner(priv)
		ts.Check(err)
		sig, err := signer.SignPayload(payload)
		ts.Check(err)
		sigs, _ := role["signatures"].([]any)
		role["signatures"] = append(sigs, map[string]any{"keyid": signer.KeyID(), "sig": hex.EncodeToString(sig)})
	default:
		ts.Fatalf("editbundle: unknown edit %q", args[1])
	}
	out, err := json.MarshalIndent(b, "", "  ")
	ts.Check(err)
	ts.Check(os.WriteFile(p, out, 0o644))
}

func parsePEMPublic(s string) (any, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

func sha256hexOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
