package clients

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
)

// TargetInfo is a target's signed metadata as a client reads it.
type TargetInfo struct {
	Length int64             `json:"length"`
	Hashes map[string]string `json:"hashes"` // hex
	Custom json.RawMessage   `json:"custom,omitempty"`
}

func (c *goTUF) Lookup(ctx context.Context, targetPath string) (*TargetInfo, error) {
	up, err := c.updater(ctx)
	if err != nil {
		return nil, fmt.Errorf("go-tuf: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return nil, fmt.Errorf("go-tuf: refresh: %w", err)
	}
	tf, err := up.GetTargetInfo(targetPath)
	if err != nil {
		return nil, fmt.Errorf("go-tuf: target %s: %w", targetPath, err)
	}
	info := &TargetInfo{Length: tf.Length, Hashes: map[string]string{}}
	for alg, h := range tf.Hashes {
		info.Hashes[alg] = h.String()
	}
	if tf.Custom != nil {
		info.Custom = *tf.Custom
	}
	return info, nil
}

func (c *tufJS) Lookup(ctx context.Context, targetPath string) (*TargetInfo, error) {
	res, err := c.run(ctx, nil, targetPath)
	if err != nil {
		return nil, err
	}
	info := res.Infos[targetPath]
	if info == nil {
		return nil, fmt.Errorf("tuf-js: result has no info for %s", targetPath)
	}
	return info, nil
}

// CheckTargetInfos serves repoDir and checks that fresh go-tuf and tuf-js
// clients, bootstrapped with trustedRoot, accept it and find every target
// of want with exactly that length and sha256 (content that is not in the
// repository: image manifests).
func CheckTargetInfos(t testing.TB, repoDir string, trustedRoot []byte, want map[string]TargetInfo) {
	t.Helper()
	metadataURL, targetsURL := Serve(t, repoDir)
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	for _, c := range All(t, Config{TrustedRoot: trustedRoot, MetadataURL: metadataURL, TargetsURL: targetsURL}) {
		for _, name := range sortedKeys(want) {
			got, err := c.Lookup(ctx, name)
			if err != nil {
				t.Errorf("%s rejected repository %s: %v", c.Name(), repoDir, err)
				continue
			}
			if w := want[name]; got.Length != w.Length || got.Hashes["sha256"] != w.Hashes["sha256"] {
				t.Errorf("%s: %s is %d bytes sha256 %s, want %d bytes sha256 %s", c.Name(), name, got.Length, got.Hashes["sha256"], w.Length, w.Hashes["sha256"])
			}
		}
	}
}
