package roles

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// CheckVersions compares the repository in after with the one in before
// (the same directory before a change) and reports every version that
// does not grow as clients require: a root file that changed or vanished,
// a timestamp, snapshot or role listed in the snapshot whose version went
// down, and metadata whose content changed under the same version
// (clients that already have that version never fetch it again). c (nil
// for none) is the Cache shared with Verify and CheckClients.
func CheckVersions(before, after fs.FS, c *Cache) []Problem {
	var probs []Problem
	add := func(role, file, detail, hint string) {
		probs = append(probs, Problem{Role: role, File: file, Rule: RuleVersion, Detail: detail, Hint: hint})
	}
	oldRoots, _ := readRoots(before)
	newRoots, _ := readRoots(after)
	for i, old := range oldRoots {
		p := rootPath(int64(i + 1))
		switch {
		case i >= len(newRoots):
			add(metadata.ROOT, p, fmt.Sprintf("%s would disappear: clients holding an older root could not follow the chain", p),
				"never remove a published root version")
		case !bytes.Equal(old, newRoots[i]):
			add(metadata.ROOT, p, fmt.Sprintf("%s would change: a published root version is immutable", p),
				"make the change in a new root version")
		}
	}

	oldTS, _ := readTimestamp(c, before)
	newTS, newData := readTimestamp(c, after)
	if oldTS == nil || newTS == nil {
		return probs
	}
	oldData, _ := readBounded(before, timestampPath(), TimestampMaxLength)
	tsv, ntsv := oldTS.Signed.Version, newTS.Signed.Version
	switch {
	case ntsv < tsv:
		add(metadata.TIMESTAMP, timestampPath(), fmt.Sprintf("timestamp would go from v%d down to v%d: clients refuse it as a rollback", tsv, ntsv),
			"give the timestamp a version above every one published")
	case ntsv == tsv && !bytes.Equal(oldData, newData):
		add(metadata.TIMESTAMP, timestampPath(), fmt.Sprintf("timestamp v%d would change without a new version: clients that have it never see the change", tsv),
			"give the timestamp a new version")
	}
	oldSM, newSM := oldTS.Signed.Meta["snapshot.json"], newTS.Signed.Meta["snapshot.json"]
	if oldSM == nil || newSM == nil {
		return probs
	}
	if newSM.Version < oldSM.Version {
		add(metadata.SNAPSHOT, "", fmt.Sprintf("snapshot would go from v%d down to v%d: clients refuse it as a rollback", oldSM.Version, newSM.Version),
			"give the snapshot a version above every one published")
	}
	consistent := len(newRoots) > 0 && rootConsistent(c, newRoots[len(newRoots)-1])
	oldSnPath := rolePath(metadata.SNAPSHOT, oldSM.Version, consistent)
	newSnPath := rolePath(metadata.SNAPSHOT, newSM.Version, consistent)
	oldSnData, err1 := readBounded(before, oldSnPath, metaLimit(metadata.SNAPSHOT, oldSM.Length))
	newSnData, err2 := readBounded(after, newSnPath, metaLimit(metadata.SNAPSHOT, newSM.Length))
	if err1 != nil || err2 != nil {
		return probs
	}
	if newSM.Version == oldSM.Version && !bytes.Equal(oldSnData, newSnData) {
		add(metadata.SNAPSHOT, newSnPath, fmt.Sprintf("snapshot v%d would change without a new version: clients that have it never see the change", oldSM.Version),
			"give the snapshot a new version")
	}
	oldSn, err1 := parseCached[metadata.SnapshotType](c, oldSnData)
	newSn, err2 := parseCached[metadata.SnapshotType](c, newSnData)
	if err1 != nil || err2 != nil {
		return probs
	}
	for _, name := range slices.Sorted(maps.Keys(oldSn.Signed.Meta)) {
		om := oldSn.Signed.Meta[name]
		nm := newSn.Signed.Meta[name]
		role := name[:len(name)-len(".json")]
		if nm == nil {
			add(role, newSnPath, fmt.Sprintf("snapshot v%d would drop %s, which snapshot v%d lists: clients refuse a snapshot that drops an entry", newSn.Signed.Version, name, oldSn.Signed.Version),
				"keep every entry in the snapshot, also of roles no longer delegated")
			continue
		}
		if om == nil {
			continue
		}
		if nm.Version < om.Version {
			add(role, newSnPath, fmt.Sprintf("%s would go from v%d down to v%d: clients refuse it as a rollback", role, om.Version, nm.Version),
				"give the role a version above every one published")
			continue
		}
		if nm.Version == om.Version && !consistent {
			p := rolePath(role, 0, false)
			o, e1 := readBounded(before, p, metaLimit(role, om.Length))
			n, e2 := readBounded(after, p, metaLimit(role, nm.Length))
			if e1 == nil && e2 == nil && !bytes.Equal(o, n) {
				add(role, p, fmt.Sprintf("%s v%d would change without a new version: clients that have it never see the change", role, om.Version),
					"bump the role's version (and update snapshot and timestamp)")
			}
		}
	}
	return probs
}

func readTimestamp(c *Cache, fsys fs.FS) (*metadata.Metadata[metadata.TimestampType], []byte) {
	data, err := readBounded(fsys, timestampPath(), TimestampMaxLength)
	if err != nil {
		return nil, nil
	}
	md, err := parseCached[metadata.TimestampType](c, data)
	if err != nil {
		return nil, nil
	}
	return md, data
}

func rootConsistent(c *Cache, data []byte) bool {
	md, err := parseCached[metadata.RootType](c, data)
	return err == nil && md.Signed.ConsistentSnapshot
}
