// Command tuf-check serves a TUF repository over loopback HTTP and runs two
// independent TUF clients against it, go-tuf's updater and tuf-js, each from
// a fresh state trusting only the given root. Each must accept the
// repository and fetch every named target with exactly the local file's
// bytes. It is part of rootkeeper's test tooling (make demo), not of
// rootkeeper.
//
//	tuf-check --repo DIR [--trusted-root FILE] [TARGET=LOCALFILE]...
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
)

func main() {
	repo := flag.String("repo", "", "the repository directory (metadata/ and targets/)")
	trusted := flag.String("trusted-root", "", "the root the clients start from (default DIR/metadata/1.root.json)")
	flag.Parse()
	if *repo == "" {
		fmt.Fprintln(os.Stderr, "usage: tuf-check --repo DIR [--trusted-root FILE] [TARGET=LOCALFILE]...")
		os.Exit(2)
	}
	if err := check(*repo, *trusted, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "tuf-check: %v\n", err)
		os.Exit(1)
	}
}

func check(repo, trusted string, pairs []string) error {
	if trusted == "" {
		trusted = filepath.Join(repo, "metadata", "1.root.json")
	}
	root, err := os.ReadFile(trusted)
	if err != nil {
		return err
	}
	if err := clients.EnsureNodeDeps(); err != nil {
		return err
	}
	meta, targets, stop := clients.ServeDir(repo)
	defer stop()
	cache, err := os.MkdirTemp("", "tuf-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cache)
	cs, err := clients.Standalone(clients.Config{TrustedRoot: root, MetadataURL: meta, TargetsURL: targets}, cache)
	if err != nil {
		return err
	}
	want := map[string][]byte{}
	for _, p := range pairs {
		name, file, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("%q: write TARGET=LOCALFILE", p)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		want[name] = data
	}
	ctx := context.Background()
	failed := false
	for _, c := range cs {
		if err := c.Update(ctx); err != nil {
			fmt.Printf("%-7s REJECTED the repository: %v\n", c.Name(), err)
			failed = true
			continue
		}
		v := c.TrustedVersions()
		fmt.Printf("%-7s accepted root v%d, timestamp v%d, snapshot v%d, targets v%d\n", c.Name(), v["root"], v["timestamp"], v["snapshot"], v["targets"])
		for name, data := range want {
			got, err := c.Fetch(ctx, name)
			switch {
			case err != nil:
				fmt.Printf("%-7s REJECTED target %s: %v\n", c.Name(), name, err)
				failed = true
			case !bytes.Equal(got, data):
				fmt.Printf("%-7s fetched target %s with other bytes than %s\n", c.Name(), name, name)
				failed = true
			default:
				fmt.Printf("%-7s fetched and verified target %s (%d bytes)\n", c.Name(), name, len(got))
			}
		}
	}
	if failed {
		return fmt.Errorf("a client refused the repository")
	}
	return nil
}
