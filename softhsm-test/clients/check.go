package clients

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"testing"
	"time"
)

// checkTimeout bounds one CheckRepository/ExpectRejected call.
const checkTimeout = 2 * time.Minute

// Verify runs c.Update, then fetches every target in targets and compares
// the bytes. It returns the first failure: the client's own error, or a
// content mismatch.
func Verify(ctx context.Context, c Client, targets map[string][]byte) error {
	if err := c.Update(ctx); err != nil {
		return err
	}
	for _, name := range sortedKeys(targets) {
		got, err := c.Fetch(ctx, name)
		if err != nil {
			return err
		}
		if want := targets[name]; !bytes.Equal(got, want) {
			return fmt.Errorf("%s: target %s: got %d bytes %.40q, want %d bytes %.40q",
				c.Name(), name, len(got), got, len(want), want)
		}
	}
	return nil
}

// CheckRepository serves repoDir, and checks that a fresh go-tuf client and a
// fresh tuf-js client, both bootstrapped with trustedRoot (normally the bytes
// of repoDir/metadata/1.root.json), update successfully and fetch every
// target in targets (target path → expected content) with exactly those
// bytes. Each failure is reported with t.Errorf with the client's own error;
// both clients are always tried.
func CheckRepository(t testing.TB, repoDir string, trustedRoot []byte, targets map[string][]byte) {
	t.Helper()
	metadataURL, targetsURL := Serve(t, repoDir)
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	for _, c := range All(t, Config{TrustedRoot: trustedRoot, MetadataURL: metadataURL, TargetsURL: targetsURL}) {
		if err := Verify(ctx, c, targets); err != nil {
			t.Errorf("%s rejected repository %s: %v", c.Name(), repoDir, err)
		}
	}
}

// ExpectRejected serves repoDir and checks that a fresh go-tuf client and a
// fresh tuf-js client, bootstrapped with trustedRoot, both refuse it: the
// update fails, or, if target is not empty, fetching target fails. A client
// that accepts is reported with t.Errorf. It returns the clients' errors by
// client name (only for clients that refused), so the test can check the
// messages.
func ExpectRejected(t testing.TB, repoDir string, trustedRoot []byte, target string) map[string]error {
	t.Helper()
	metadataURL, targetsURL := Serve(t, repoDir)
	return RejectedBy(t, All(t, Config{TrustedRoot: trustedRoot, MetadataURL: metadataURL, TargetsURL: targetsURL}), target)
}

// RejectedBy is ExpectRejected for given clients (e.g. with state, or with
// Config.At): each must fail Update, or Fetch(target) if target is not
// empty. It returns the errors by client name and reports with t.Errorf
// every client that accepted.
func RejectedBy(t testing.TB, cs []Client, target string) map[string]error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	errs := map[string]error{}
	for _, c := range cs {
		err := c.Update(ctx)
		if err == nil && target != "" {
			_, err = c.Fetch(ctx, target)
		}
		if err == nil {
			what := "the update"
			if target != "" {
				what = "target " + target
			}
			t.Errorf("%s accepted %s, want rejection", c.Name(), what)
			continue
		}
		errs[c.Name()] = err
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
