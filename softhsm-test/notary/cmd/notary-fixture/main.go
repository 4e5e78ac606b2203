// Command notary-fixture makes Notary v1 (Docker Content Trust) trust
// collections with Notary's own Go library (github.com/theupdateframework/notary
// v0.7.0), for rootkeeper's import tests. It lives in its own module so that
// notary's old dependencies stay out of rootkeeper's go.mod.
//
//	notary-fixture make -trust-dir DIR -gun GUN [-variant V] [-root-alg A] [-targets-alg A] [-releases-alg A]
//	               [-target NAME=SHA256:LENGTH]... [-release NAME=SHA256:LENGTH]...
//	notary-fixture publish -server URL -trust-dir DIR -gun GUN [-rotate-root] [-target NAME=SHA256:LENGTH]...
//
// make writes DIR/tuf/GUN/metadata/{root,targets,snapshot,timestamp}.json
// and targets/releases.json exactly as a Notary client's cache holds them,
// and DIR/root.crt (the root certificate) and DIR/root.id (its Notary
// certificate id). publish initialises the
// collection on a notary-server through Notary's client library, adds the
// targets and publishes (then, with -rotate-root, rotates the root key and
// publishes again); DIR/root.crt is the first root certificate. Both print
// a JSON description on stdout: the root certificate ids and the targets.
//
// Variants of make: ok, bad-signature (targets/releases signature altered
// before the snapshot is signed), wrong-cn (the root certificate is for
// another GUN), expired-cert, expired (targets metadata expired), threshold
// (targets needs 2 of 2 keys, signed by one).
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/cryptoservice"
	"github.com/theupdateframework/notary/passphrase"
	"github.com/theupdateframework/notary/trustmanager"
	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/utils"
)

const releases data.RoleName = "targets/releases"

// targetList is a repeatable NAME=SHA256:LENGTH flag.
type targetList map[string]data.FileMeta

func (t targetList) String() string { return fmt.Sprint(len(t)) }

func (t targetList) Set(s string) error {
	name, rest, ok := strings.Cut(s, "=")
	hexsum, length, ok2 := strings.Cut(rest, ":")
	sum, err := hex.DecodeString(hexsum)
	n, err2 := strconv.ParseInt(length, 10, 64)
	if !ok || !ok2 || name == "" || err != nil || len(sum) != sha256.Size || err2 != nil {
		return fmt.Errorf("want NAME=SHA256:LENGTH, got %q", s)
	}
	t[name] = data.FileMeta{Length: n, Hashes: data.Hashes{"sha256": sum}}
	return nil
}

// description is what the tests read back.
type description struct {
	GUN         string                       `json:"gun"`
	RootCertIDs []string                     `json:"root_cert_ids"`
	RootKeyIDs  []string                     `json:"root_canonical_ids"`
	RootCert    string                       `json:"root_cert_file"`
	Targets     map[string]map[string]target `json:"targets"`
}

type target struct {
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: notary-fixture make|publish [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "make":
		err = makeCmd(os.Args[2:])
	case "publish":
		err = publishCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "notary-fixture:", err)
		os.Exit(1)
	}
}

func makeCmd(args []string) error {
	fs := flag.NewFlagSet("make", flag.ExitOnError)
	dir := fs.String("trust-dir", "", "trust directory to write")
	gun := fs.String("gun", "", "the collection's GUN")
	variant := fs.String("variant", "ok", "ok, bad-signature, wrong-cn, expired-cert, expired, threshold")
	rootAlg := fs.String("root-alg", "ecdsa", "root key: ecdsa or rsa")
	targetsAlg := fs.String("targets-alg", "ecdsa", "targets key: ecdsa, ed25519 or rsa")
	releasesAlg := fs.String("releases-alg", "ed25519", "targets/releases key: ecdsa, ed25519 or rsa")
	tg, rel := targetList{}, targetList{}
	fs.Var(tg, "target", "a target of the targets role (repeatable)")
	fs.Var(rel, "release", "a target of targets/releases (repeatable)")
	fs.Parse(args)
	if *dir == "" || *gun == "" {
		return errors.New("-trust-dir and -gun are required")
	}
	if len(tg) == 0 && len(rel) == 0 {
		tg.Set("latest=" + strings.Repeat("ab", 32) + ":1234")
		rel.Set("v1.0=" + strings.Repeat("cd", 32) + ":2345")
	}
	c := &collection{gun: data.GUN(*gun), variant: *variant,
		cs: cryptoservice.NewCryptoService(trustmanager.NewKeyMemoryStore(passphrase.ConstantRetriever("fixture")))}
	files, err := c.build(*rootAlg, *targetsAlg, *releasesAlg, tg, rel)
	if err != nil {
		return err
	}
	meta := filepath.Join(*dir, "tuf", filepath.FromSlash(*gun), "metadata")
	for name, b := range files {
		p := filepath.Join(meta, filepath.FromSlash(name)+".json")
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	d := c.describe(*dir, map[string]targetList{"targets": tg, string(releases): rel})
	if err := os.WriteFile(d.RootCert, c.certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "root.id"), []byte(d.RootCertIDs[0]+"\n"), 0o644); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(d)
}

type collection struct {
	gun     data.GUN
	variant string
	cs      *cryptoservice.CryptoService
	rootKey data.PublicKey // the certificate key
	rootID  string         // canonical id of the root key
	certPEM []byte
}

// newKey makes a key for role with Notary's crypto service; RSA keys are
// generated here and imported, as Notary only imports them.
func (c *collection) newKey(role data.RoleName, alg string) (data.PublicKey, error) {
	switch alg {
	case data.RSAKey:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		priv, err := utils.RSAToPrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := c.cs.AddKey(role, c.gun, priv); err != nil {
			return nil, err
		}
		return data.PublicKeyFromPrivate(priv), nil
	case data.ECDSAKey, data.ED25519Key:
		return c.cs.Create(role, c.gun, alg)
	}
	return nil, fmt.Errorf("unknown key algorithm %q", alg)
}

// rootCert makes the root key and its certificate, as notary init does
// (client.rootCertKey), with the variant's CN or validity.
func (c *collection) rootCert(alg string) error {
	pub, err := c.newKey(data.CanonicalRootRole, alg)
	if err != nil {
		return err
	}
	priv, _, err := c.cs.GetPrivateKey(pub.ID())
	if err != nil {
		return err
	}
	cn, start, end := c.gun, time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour)
	switch c.variant {
	case "wrong-cn":
		cn = "example.com/someone-else"
	case "expired-cert":
		start, end = time.Now().Add(-2*365*24*time.Hour), time.Now().Add(-24*time.Hour)
	}
	cert, err := cryptoservice.GenerateCertificate(priv, cn, start, end)
	if err != nil {
		return err
	}
	c.rootKey = utils.CertToKey(cert)
	c.rootID = pub.ID()
	c.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return nil
}

// build makes and signs every role with tuf.Repo and returns the files by
// role name, as the client's cache stores them.
func (c *collection) build(rootAlg, targetsAlg, releasesAlg string, tg, rel targetList) (map[string][]byte, error) {
	if err := c.rootCert(rootAlg); err != nil {
		return nil, err
	}
	tk, err := c.newKey(data.CanonicalTargetsRole, targetsAlg)
	if err != nil {
		return nil, err
	}
	targetKeys, threshold := []data.PublicKey{tk}, 1
	if c.variant == "threshold" {
		tk2, err := c.newKey(data.CanonicalTargetsRole, targetsAlg)
		if err != nil {
			return nil, err
		}
		targetKeys, threshold = append(targetKeys, tk2), 2
	}
	sk, err := c.newKey(data.CanonicalSnapshotRole, data.ECDSAKey)
	if err != nil {
		return nil, err
	}
	tsk, err := c.newKey(data.CanonicalTimestampRole, data.ED25519Key)
	if err != nil {
		return nil, err
	}
	repo := tuf.NewRepo(c.cs)
	if err := repo.InitRoot(data.NewBaseRole(data.CanonicalRootRole, 1, c.rootKey),
		data.NewBaseRole(data.CanonicalTimestampRole, 1, tsk),
		data.NewBaseRole(data.CanonicalSnapshotRole, 1, sk),
		data.NewBaseRole(data.CanonicalTargetsRole, threshold, targetKeys...), false); err != nil {
		return nil, err
	}
	if _, err := repo.InitTargets(data.CanonicalTargetsRole); err != nil {
		return nil, err
	}
	if err := repo.InitSnapshot(); err != nil {
		return nil, err
	}
	if err := repo.InitTimestamp(); err != nil {
		return nil, err
	}
	if len(rel) > 0 {
		if err := c.delegate(repo, releasesAlg, rel); err != nil {
			return nil, err
		}
	}
	if len(tg) > 0 {
		if _, err := repo.AddTargets(data.CanonicalTargetsRole, data.Files(tg)); err != nil {
			return nil, err
		}
	}
	return c.sign(repo, len(rel) > 0)
}

func (c *collection) delegate(repo *tuf.Repo, alg string, rel targetList) error {
	rk, err := c.newKey(releases, alg)
	if err != nil {
		return err
	}
	if err := repo.UpdateDelegationKeys(releases, data.KeyList{rk}, nil, 1); err != nil {
		return err
	}
	if err := repo.UpdateDelegationPaths(releases, []string{""}, nil, false); err != nil {
		return err
	}
	_, err = repo.AddTargets(releases, data.Files(rel))
	return err
}

// sign signs every role in Notary's order and applies the variant's damage
// before the snapshot records the files' hashes.
func (c *collection) sign(repo *tuf.Repo, withReleases bool) (map[string][]byte, error) {
	year := time.Now().Add(365 * 24 * time.Hour)
	if _, err := repo.SignRoot(year, nil); err != nil {
		return nil, err
	}
	tExp := time.Now().Add(90 * 24 * time.Hour)
	if c.variant == "expired" {
		tExp = time.Now().Add(-time.Hour)
	}
	if _, err := repo.SignTargets(data.CanonicalTargetsRole, tExp); err != nil {
		return nil, err
	}
	if c.variant == "threshold" {
		// One of the two targets key holders signs: keep one signature.
		sigs := repo.Targets[data.CanonicalTargetsRole].Signatures
		if len(sigs) > 1 {
			repo.Targets[data.CanonicalTargetsRole].Signatures = sigs[:1]
		}
	}
	if withReleases {
		if _, err := repo.SignTargets(releases, tExp); err != nil {
			return nil, err
		}
		if c.variant == "bad-signature" {
			repo.Targets[releases].Signatures[0].Signature[5] ^= 0x01
		}
	}
	if _, err := repo.SignSnapshot(time.Now().Add(30 * 24 * time.Hour)); err != nil {
		return nil, err
	}
	if _, err := repo.SignTimestamp(time.Now().Add(14 * 24 * time.Hour)); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	var err error
	if files["root"], err = repo.Root.MarshalJSON(); err != nil {
		return nil, err
	}
	for name, t := range repo.Targets {
		if files[name.String()], err = t.MarshalJSON(); err != nil {
			return nil, err
		}
	}
	if files["snapshot"], err = repo.Snapshot.MarshalJSON(); err != nil {
		return nil, err
	}
	if files["timestamp"], err = repo.Timestamp.MarshalJSON(); err != nil {
		return nil, err
	}
	return files, nil
}

func (c *collection) describe(dir string, roles map[string]targetList) *description {
	d := &description{GUN: c.gun.String(), RootCertIDs: []string{c.rootKey.ID()}, RootKeyIDs: []string{c.rootID},
		RootCert: filepath.Join(dir, "root.crt"), Targets: map[string]map[string]target{}}
	for role, tl := range roles {
		if len(tl) == 0 {
			continue
		}
		d.Targets[role] = map[string]target{}
		for name, m := range tl {
			d.Targets[role][name] = target{Length: m.Length, SHA256: hex.EncodeToString(m.Hashes["sha256"])}
		}
	}
	return d
}

// publishCmd makes a collection on a notary-server with Notary's client,
// as `notary init`, `notary add` and `notary publish` would.
func publishCmd(args []string) error {
	fs := flag.NewFlagSet("publish", flag.ExitOnError)
	server := fs.String("server", "", "notary-server URL")
	dir := fs.String("trust-dir", "", "the client's trust directory")
	gun := fs.String("gun", "", "the collection's GUN")
	rotate := fs.Bool("rotate-root", false, "rotate the root key after the first publish")
	tg := targetList{}
	fs.Var(tg, "target", "a target of the targets role (repeatable)")
	fs.Parse(args)
	if *server == "" || *dir == "" || *gun == "" {
		return errors.New("-server, -trust-dir and -gun are required")
	}
	repo, err := client.NewFileCachedRepository(*dir, data.GUN(*gun), *server, http.DefaultTransport,
		passphrase.ConstantRetriever("fixture"), trustpinning.TrustPinConfig{})
	if err != nil {
		return err
	}
	rootPub, err := repo.GetCryptoService().Create(data.CanonicalRootRole, "", data.ECDSAKey)
	if err != nil {
		return err
	}
	if err := repo.Initialize([]string{rootPub.ID()}); err != nil {
		return err
	}
	for name, m := range tg {
		if err := repo.AddTarget(&client.Target{Name: name, Hashes: m.Hashes, Length: m.Length}, data.CanonicalTargetsRole); err != nil {
			return err
		}
	}
	if err := repo.Publish(); err != nil {
		return err
	}
	d, err := describeRemote(repo, *dir, *gun, tg)
	if err != nil {
		return err
	}
	if *rotate {
		if err := repo.RotateKey(data.CanonicalRootRole, false, nil); err != nil {
			return err
		}
		if err := repo.Publish(); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(d)
}

// describeRemote reads the first root certificate back from the client's
// cache and writes it to DIR/root.crt.
func describeRemote(repo client.Repository, dir, gun string, tg targetList) (*description, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "tuf", filepath.FromSlash(gun), "metadata", "root.json"))
	if err != nil {
		return nil, err
	}
	var root struct {
		Signed struct {
			Keys  map[string]data.TUFKey `json:"keys"`
			Roles map[string]struct {
				KeyIDs []string `json:"keyids"`
			} `json:"roles"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(raw, &root); err != nil {
		return nil, err
	}
	d := &description{GUN: gun, RootCert: filepath.Join(dir, "root.crt"), Targets: map[string]map[string]target{"targets": {}}}
	for _, id := range root.Signed.Roles["root"].KeyIDs {
		k := root.Signed.Keys[id]
		d.RootCertIDs = append(d.RootCertIDs, id)
		if err := os.WriteFile(d.RootCert, k.Public(), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "root.id"), []byte(id+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	for name, m := range tg {
		d.Targets["targets"][name] = target{Length: m.Length, SHA256: hex.EncodeToString(m.Hashes["sha256"])}
	}
	return d, nil
}
