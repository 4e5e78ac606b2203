package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// craftMain is the golden scripts' rootkeeper-craft command: it makes a
// repository that another tool could have written — properly signed with
// the keys rootkeeper.yaml lists, and written without any check — so that
// the scripts can show what verify and every write say about it.
//
//	rootkeeper-craft setversion REPO ROLE N   targets or a delegated role at version N
//	rootkeeper-craft rename REPO OLD NEW      a delegated role renamed to NEW
//
// Both sign the changed roles, a new snapshot and a new timestamp, and
// record the change in the transcript as a cooperating tool would (the
// anchor in what it signs, an entry naming the files), so that what the
// scripts show is the metadata's problem, not the transcript's.
func craftMain(args []string) int {
	if err := craft(args); err != nil {
		fmt.Fprintln(os.Stderr, "rootkeeper-craft:", err)
		return 1
	}
	return 0
}

func craft(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("usage: rootkeeper-craft (setversion REPO ROLE N | rename REPO OLD NEW)")
	}
	dir := args[1]
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		return err
	}
	tr, err := os.ReadFile(filepath.Join(dir, ceremony.TranscriptFile))
	if err != nil {
		return err
	}
	entries, err := ceremony.ParseTranscript(tr)
	if err != nil {
		return err
	}
	lines := bytes.Split(bytes.TrimSuffix(tr, []byte("\n")), []byte("\n"))
	prev := sha256.Sum256(lines[len(lines)-1])
	repo.Anchor = &roles.Anchor{Seq: len(entries), Head: "sha256:" + hex.EncodeToString(prev[:])}
	pol, err := ceremony.LoadPolicy(dir)
	if err != nil {
		return err
	}
	exp := time.Now().Add(24 * time.Hour)
	var signed []string // roles to sign, with the policy entry of their keys
	keysOf := map[string]string{}
	switch args[0] {
	case "setversion":
		role := args[2]
		n, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil {
			return err
		}
		md, err := targetsMD(repo, role)
		if err != nil {
			return err
		}
		md.Signed.Version, md.Signed.Expires, md.Signatures = n, exp.UTC().Truncate(time.Second), nil
		if md.Signed.UnrecognizedFields == nil {
			md.Signed.UnrecognizedFields = map[string]any{}
		}
		md.Signed.UnrecognizedFields[roles.AnchorField] = map[string]any{"seq": repo.Anchor.Seq, "head": repo.Anchor.Head}
		signed, keysOf[role] = []string{role}, role
	case "rename":
		from, err := renameRole(repo, args[2], args[3], exp)
		if err != nil {
			return err
		}
		signed = []string{args[3], from}
		keysOf[args[3]], keysOf[from] = args[2], from
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
	sess := &ceremony.Session{Keys: hsm.NewKeyring(hsm.Options{})}
	defer sess.Close()
	for _, role := range signed {
		md, err := targetsMD(repo, role)
		if err != nil {
			return err
		}
		if err := signAs(sess, pol, keysOf[role], func(s *roles.Signer) error { return roles.Sign(md, s) }); err != nil {
			return err
		}
	}
	if err := repo.UpdateSnapshot(exp); err != nil {
		return err
	}
	if err := signAs(sess, pol, metadata.SNAPSHOT, func(s *roles.Signer) error { return roles.Sign(repo.Snapshot, s) }); err != nil {
		return err
	}
	if err := repo.UpdateTimestamp(exp); err != nil {
		return err
	}
	if err := signAs(sess, pol, metadata.TIMESTAMP, func(s *roles.Signer) error { return roles.Sign(repo.Timestamp, s) }); err != nil {
		return err
	}
	files, err := repo.Files()
	if err != nil {
		return err
	}
	entry := ceremony.Entry{Seq: len(entries) + 1, Time: time.Now().UTC(), Operation: "craft-" + args[0], Schema: ceremony.TranscriptSchema,
		Repository: entries[0].Repository, Anchor: repo.Anchor, Files: map[string]string{}, Prev: hex.EncodeToString(prev[:])}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.Data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(f.Data)
		entry.Files[f.Path] = hex.EncodeToString(sum[:])
	}
	line, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ceremony.TranscriptFile), append(append(tr, line...), '\n'), 0o644)
}

func targetsMD(repo *roles.Repo, role string) (*metadata.Metadata[metadata.TargetsType], error) {
	if role == metadata.TARGETS {
		return repo.Targets, nil
	}
	if md := repo.Delegated[role]; md != nil {
		return md, nil
	}
	return nil, fmt.Errorf("no role %q", role)
}

// renameRole renames the delegated role old to name in its delegator,
// bumps both and returns the delegator.
func renameRole(repo *roles.Repo, old, name string, exp time.Time) (string, error) {
	for _, from := range append([]string{metadata.TARGETS}, keys(repo.Delegated)...) {
		md, _ := targetsMD(repo, from)
		if md == nil || md.Signed.Delegations == nil {
			continue
		}
		for i := range md.Signed.Delegations.Roles {
			if md.Signed.Delegations.Roles[i].Name != old {
				continue
			}
			if err := repo.BumpRole(from, exp); err != nil {
				return "", err
			}
			if err := repo.BumpRole(old, exp); err != nil {
				return "", err
			}
			md.Signed.Delegations.Roles[i].Name = name
			repo.Delegated[name] = repo.Delegated[old]
			delete(repo.Delegated, old)
			return from, nil
		}
	}
	return "", fmt.Errorf("no role delegates to %q", old)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// signAs signs with every key rootkeeper.yaml lists for entry.
func signAs(sess *ceremony.Session, pol *ceremony.Policy, entry string, sign func(*roles.Signer) error) error {
	uris := pol.Roles[entry].Keys
	if len(uris) == 0 {
		return fmt.Errorf("%s lists no keys for %s", ceremony.PolicyFile, entry)
	}
	for _, uri := range uris {
		k, err := sess.Open(context.Background(), uri)
		if err != nil {
			return err
		}
		if err := sign(k.TUF); err != nil {
			return err
		}
	}
	return nil
}
