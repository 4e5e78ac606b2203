package fleet

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// The batch's real peer (docs/performance.md): what a bare go-tuf v2
// script does to re-sign the root of many repositories with the same key,
// and nothing more — load the newest root, bump its version and expiry,
// sign it through a plain crypto.Signer (the same PKCS#11 key, through
// hsm/pkcs11's Signer), write the new version. No lock, no journal, no
// fsync, no verification of anything, no transcript: the cheapest correct
// looking output, which rootkeeper's batch is measured against.

// peerFleet copies the fleet's repositories to dirs of their own, so that
// the loop and the batch start from the same bytes and do not see each
// other's writes.
func peerFleet(b *testing.B, dirs []string) []string {
	b.Helper()
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = d + "-peer"
		copyTree(b, d, out[i])
	}
	return out
}

// goTUFLoop re-signs the root of every repository of dirs, one after the
// other, with signer (whose TUF key id is keyID), as of now: a bare go-tuf
// loop. It returns the wall time and the CPU time it took.
func goTUFLoop(b *testing.B, dirs []string, signer crypto.Signer, keyID string, now time.Time, life time.Duration) (wall, cpu time.Duration) {
	b.Helper()
	start, cpu0 := time.Now(), cpuTime()
	for _, dir := range dirs {
		if err := goTUFResignRoot(dir, signer, keyID, now, life); err != nil {
			b.Fatalf("%s: %v", dir, err)
		}
	}
	return time.Since(start), cpuTime() - cpu0
}

// goTUFResignRoot is one repository of the loop.
func goTUFResignRoot(dir string, signer crypto.Signer, keyID string, now time.Time, life time.Duration) error {
	v := int64(1)
	for {
		if _, err := os.Stat(filepath.Join(dir, "metadata", fmt.Sprintf("%d.root.json", v+1))); err != nil {
			break
		}
		v++
	}
	data, err := os.ReadFile(filepath.Join(dir, "metadata", fmt.Sprintf("%d.root.json", v)))
	if err != nil {
		return err
	}
	root, err := metadata.Root().FromBytes(data)
	if err != nil {
		return err
	}
	root.Signed.Version++
	root.Signed.Expires = now.Add(life).UTC().Truncate(time.Second)
	root.Signatures = nil
	payload, err := cjson.EncodeCanonical(root.Signed)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(payload)
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return err
	}
	root.Signatures = append(root.Signatures, metadata.Signature{KeyID: keyID, Signature: sig})
	out, err := root.ToBytes(true)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "metadata", fmt.Sprintf("%d.root.json", v+1)), out, 0o644)
}

// checkPeer makes sure the loop did what it claims: go-tuf's client takes
// the new root from the old one in dir.
func checkPeer(b *testing.B, dir string) {
	b.Helper()
	v1, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if err != nil {
		b.Fatal(err)
	}
	v2, err := os.ReadFile(filepath.Join(dir, "metadata", "2.root.json"))
	if err != nil {
		b.Fatal(err)
	}
	tm, err := trustedmetadata.New(v1)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tm.UpdateRoot(v2); err != nil {
		b.Fatalf("the loop's root v2 of %s: %v", dir, err)
	}
}

// goTUFClients runs go-tuf's own client rules over every repository of
// dirs as of at, the way a fresh client meets it (trustedmetadata: trust
// 1.root.json, then each newer root, the timestamp, the snapshot it names,
// targets), on as many goroutines as StatusMany uses, and returns the wall
// and CPU time it took. No rootkeeper code runs: it is the least that
// checking a repository "as a client would" costs, the floor under status
// and under any re-sign that checks what it is about to publish.
func goTUFClients(b *testing.B, dirs []string, at time.Time) (wall, cpu time.Duration) {
	b.Helper()
	start, cpu0 := time.Now(), cpuTime()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range workers(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(dirs) {
					return
				}
				if err := goTUFClient(dirs[i], at); err != nil {
					select {
					case errs <- fmt.Errorf("%s: %w", dirs[i], err):
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	wall, cpu = time.Since(start), cpuTime()-cpu0
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return wall, cpu
}

// goTUFClient is one repository of goTUFClients.
func goTUFClient(dir string, at time.Time) error {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, "metadata", name)) }
	data, err := read("1.root.json")
	if err != nil {
		return err
	}
	tm, err := trustedmetadata.New(data)
	if err != nil {
		return err
	}
	tm.RefTime = at
	for v := 2; ; v++ {
		data, err := read(fmt.Sprintf("%d.root.json", v))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return err
		}
		if _, err := tm.UpdateRoot(data); err != nil {
			return err
		}
	}
	if data, err = read("timestamp.json"); err != nil {
		return err
	}
	ts, err := tm.UpdateTimestamp(data)
	if err != nil {
		return err
	}
	if data, err = read(fmt.Sprintf("%d.snapshot.json", ts.Signed.Meta["snapshot.json"].Version)); err != nil {
		return err
	}
	sn, err := tm.UpdateSnapshot(data, false)
	if err != nil {
		return err
	}
	if data, err = read(fmt.Sprintf("%d.targets.json", sn.Signed.Meta["targets.json"].Version)); err != nil {
		return err
	}
	_, err = tm.UpdateTargets(data)
	return err
}
