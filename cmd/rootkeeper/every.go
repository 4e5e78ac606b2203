package main

import (
	"context"
	"fmt"
	"maps"
	"os/signal"
	"syscall"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/ceremony/fleet"
)

// minEvery is the shortest interval status --every takes.
const minEvery = time.Second

// statusEvery is status --every: a long-running pass over the repositories
// every interval, each rewriting the metrics file, through one
// fleet.Memory (an unchanged repository is not verified again), until
// SIGINT or SIGTERM.
func (a *app) statusEvery(ctx context.Context, repos *repoFlags, every, prom, at string, asJSON bool) error {
	d, err := ceremony.ParseDuration(every)
	if err != nil {
		return usageError{fmt.Errorf("--every: %w", err)}
	}
	interval := d.D()
	switch {
	case interval < minEvery:
		return usageError{fmt.Errorf("--every %s: the interval must be at least %s", every, minEvery)}
	case prom == "":
		return usageError{hinted{fmt.Errorf("--every needs --prometheus FILE: it is the file each pass rewrites"),
			"status --repos GLOB --prometheus /var/lib/node_exporter/textfile/rootkeeper.prom --every 1m"}}
	case at != "":
		return usageError{fmt.Errorf("--every reports at the time of each pass: it cannot be used with --at")}
	}
	list := repos.list
	if repos.from == "-" { // standard input is read once
		dirs, err := repos.list()
		if err != nil {
			return err
		}
		list = func() ([]string, error) { return dirs, nil }
	} else if _, err := repos.list(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	mem := fleet.NewMemory()
	errs := map[string]string{} // each repository's error at the last pass, said once
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := a.statusPass(ctx, mem, list, prom, asJSON, errs); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// passSummary is one line of status --every (--json: one object a line).
type passSummary struct {
	At           time.Time        `json:"at"`
	Repositories int              `json:"repositories"`
	Healthy      int              `json:"healthy"`
	Due          int              `json:"due"`
	Invalid      int              `json:"invalid"`
	Errors       int              `json:"errors"`
	Verified     int64            `json:"verified"`  // verified in full in this pass
	Unchanged    int64            `json:"unchanged"` // drawn from memory: every file as the last pass read it
	Took         ceremony.Seconds `json:"took_seconds"`
}

// statusPass is one pass of status --every. A repository that cannot be
// read is said on standard error when its error first appears or changes
// (errs: each repository's error at the last pass).
func (a *app) statusPass(ctx context.Context, mem *fleet.Memory, list func() ([]string, error), prom string, asJSON bool, errs map[string]string) error {
	dirs, err := list()
	if err != nil {
		return err
	}
	mem.Keep(dirs)
	start := clock()
	at := start.UTC().Truncate(time.Second)
	reused0, checked0 := mem.Counts()
	sts := fleet.StatusManyWith(ctx, mem, dirs, at, 0)
	if ctx.Err() != nil {
		return nil // interrupted: the last pass's metrics file stays
	}
	reused, checked := mem.Counts()
	took := clock().Sub(start)
	pass := &fleet.Pass{Took: took, Verified: checked - checked0, Unchanged: reused - reused0}
	if err := fleet.WritePrometheusPass(prom, at, sts, pass); err != nil {
		return err
	}
	now := map[string]string{}
	for _, st := range sts {
		if st.Error == "" {
			continue
		}
		if errs[st.Repository] != st.Error {
			a.ui.printf("error: %s", st.Error)
			if st.Hint != "" {
				a.ui.printf("hint: %s", st.Hint)
			}
		}
		now[st.Repository] = st.Error
	}
	clear(errs)
	maps.Copy(errs, now)
	sum := fleet.Summarize(sts)
	ps := passSummary{At: at, Repositories: len(dirs), Healthy: sum.Healthy, Due: sum.Due, Invalid: sum.Invalid, Errors: sum.Errors,
		Verified: pass.Verified, Unchanged: pass.Unchanged, Took: ceremony.Seconds(took)}
	if asJSON {
		return a.printJSONLine(ps)
	}
	fmt.Fprintf(a.stdout, "%s: %d repositories: %d healthy, %d due, %d invalid, %d errors (%d verified, %d unchanged) in %s\n",
		at.Format(time.RFC3339), ps.Repositories, ps.Healthy, ps.Due, ps.Invalid, ps.Errors, ps.Verified, ps.Unchanged,
		took.Round(time.Millisecond))
	return nil
}
