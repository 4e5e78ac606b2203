package ceremony

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// TargetEntry is one target of one role, as targets list shows it.
type TargetEntry struct {
	Role     string            `json:"role"`
	Name     string            `json:"name"`
	Length   int64             `json:"length"`
	Hashes   map[string]string `json:"hashes"`           // hex
	External bool              `json:"external"`         // no file under targets/ (an image manifest in a registry)
	Custom   json.RawMessage   `json:"custom,omitempty"` // as signed
	Version  int64             `json:"role_version"`     // the version of the role that lists it
	Expires  string            `json:"role_expires"`     // RFC 3339
	Files    []string          `json:"files,omitempty"`  // where the content is stored, for file targets
}

// ListTargets lists the targets of every targets role of dir (top-level
// targets, then delegated roles by name), or only of role. It reads the
// metadata as it is; rootkeeper verify says whether clients accept it.
func ListTargets(dir, role string) ([]TargetEntry, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, &RepoError{Dir: dir, Detail: "no such directory", HintText: "check --repo"}
	}
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		return nil, &RepoError{Dir: dir, Detail: "cannot load metadata", Err: err,
			HintText: "run rootkeeper verify --repo " + dir + " to see what is wrong"}
	}
	names := append([]string{RoleTargets}, slices.Sorted(maps.Keys(repo.Delegated))...)
	if role != "" {
		if _, err := targetsRole(repo, role); err != nil {
			return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("no targets role %q", role),
				HintText: "use --role targets or the name of a delegated role (rootkeeper delegate list shows them)"}
		}
		names = []string{role}
	}
	consistent := repo.Root().Signed.ConsistentSnapshot
	out := []TargetEntry{}
	for _, name := range names {
		md, _ := targetsRole(repo, name)
		for _, p := range slices.Sorted(maps.Keys(md.Signed.Targets)) {
			out = append(out, targetEntry(name, p, md, consistent))
		}
	}
	return out, nil
}

func targetEntry(role, p string, md *metadata.Metadata[metadata.TargetsType], consistent bool) TargetEntry {
	tf := md.Signed.Targets[p]
	e := TargetEntry{Role: role, Name: p, Length: tf.Length, Hashes: map[string]string{}, External: roles.IsExternal(tf),
		Version: md.Signed.Version, Expires: md.Signed.Expires.UTC().Format("2006-01-02T15:04:05Z07:00")}
	for alg, h := range tf.Hashes {
		e.Hashes[alg] = h.String()
	}
	if tf.Custom != nil {
		e.Custom = json.RawMessage(*tf.Custom)
	}
	if !e.External {
		e.Files = roles.TargetFilePaths(p, tf, consistent)
	}
	return e
}
