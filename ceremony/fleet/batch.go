package fleet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
)

// ---------------------------------------------------------------------------
// Choosing the repositories.

// ExpandRepos returns the directories that glob matches, sorted (files
// are left out). A glob that matches no directory is an error: a
// scheduled job with a wrong path must not report "all healthy".
func ExpandRepos(glob string) ([]string, error) {
	matches, err := filepath.Glob(glob)
	if err != nil {
		return nil, &ceremony.RepoError{Detail: fmt.Sprintf("--repos %q: %v", glob, err), HintText: "quote the pattern, e.g. --repos '/srv/tuf/*'"}
	}
	var out []string
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.IsDir() {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, &ceremony.RepoError{Detail: fmt.Sprintf("--repos %q matches no directory", glob), HintText: "quote the pattern so that rootkeeper, not the shell, expands it, and check the path"}
	}
	sort.Strings(out)
	return out, nil
}

// ReadRepoList reads repository directories from a list, one a line;
// blank lines and lines starting with # are skipped, duplicates dropped.
func ReadRepoList(r io.Reader, name string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || seen[line] {
			continue
		}
		seen[line] = true
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, &ceremony.IOError{Op: "read", Path: name, Err: err}
	}
	if len(out) == 0 {
		return nil, &ceremony.RepoError{Detail: "--repos-from " + name + " lists no repository", HintText: "write one repository directory a line"}
	}
	return out, nil
}

func workers(n int) int {
	if n > 0 {
		return n
	}
	return max(4, runtime.GOMAXPROCS(0))
}

// ---------------------------------------------------------------------------
// Re-signing many repositories.

// BatchOptions tune ResignBatch.
type BatchOptions struct {
	ceremony.ResignOptions
	// Workers is how many repositories are worked on at once (signing is
	// serialized by each device; the disk writes overlap); 0 means 4 or
	// GOMAXPROCS, whichever is more.
	Workers int
	// Progress is called after each repository, from one goroutine at a
	// time, with the number done so far.
	Progress func(done, total int, r *ceremony.ResignResult)
}

// BatchReport summarizes a batch. It keeps only the repositories that
// need attention (failed, waiting, partly re-signed, not started), so
// that its size does not grow with the number of healthy repositories;
// BatchOptions.Progress sees every result.
type BatchReport struct {
	Total     int                      `json:"total"`
	Counts    map[ceremony.Outcome]int `json:"counts"`
	Stopped   string                   `json:"stopped,omitempty"`
	Attention []*ceremony.ResignResult `json:"attention,omitempty"`
	// Signed counts, for each role, the repositories where it was
	// re-signed; a set of hashed bins counts as one role, "PREFIX-*"
	// (each repository's result lists every bin).
	Signed  map[string]int   `json:"signed_roles"`
	Elapsed ceremony.Seconds `json:"elapsed_seconds"`
}

// Worst returns the worst outcome of the batch.
func (b *BatchReport) Worst() ceremony.Outcome {
	for _, o := range []ceremony.Outcome{ceremony.OutcomeFailed, ceremony.OutcomeNotStarted, ceremony.OutcomeWaiting, ceremony.OutcomePartial, ceremony.OutcomeDryRun, ceremony.OutcomeResigned} {
		if b.Counts[o] > 0 {
			return o
		}
	}
	return ceremony.OutcomeNothingDue
}

// ResignBatch re-signs what is due in every repository of dirs with one
// session, so that each token is opened and logged in to once. Each
// repository is locked and written on its own, all or nothing (see
// Resign): one that fails is reported and the others go on. When a device
// fails while signing (a token pulled out), the batch stops: repositories
// already done are complete, the rest are untouched and reported as not
// started, and running the same command again continues.
func ResignBatch(ctx context.Context, s *ceremony.Session, dirs []string, opts BatchOptions) *BatchReport {
	defer fleetGC()() // gctune.go
	start := time.Now()
	rep := &BatchReport{Total: len(dirs), Counts: map[ceremony.Outcome]int{}, Signed: map[string]int{}}
	rs := s.Resigner()
	notStarted := opts.At
	if opts.DryRun && opts.At.IsZero() {
		opts.At = s.Clock() // a dry run plans the whole batch as of one time
	}
	b := &batch{s: s, rs: rs, opts: opts, notStarted: notStarted, jobs: make(chan string), results: make(chan *ceremony.ResignResult)}
	jobs, results := b.jobs, b.results
	var wg sync.WaitGroup
	for range min(workers(opts.Workers), max(1, len(dirs))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.work(ctx)
		}()
	}
	go func() {
		for _, d := range dirs {
			jobs <- d
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	done := 0
	for r := range results {
		done++
		rep.add(r)
		if opts.Progress != nil {
			opts.Progress(done, len(dirs), r)
		}
	}
	sort.Slice(rep.Attention, func(i, j int) bool { return rep.Attention[i].Repository < rep.Attention[j].Repository })
	rep.Stopped = b.stopReason
	rep.Elapsed = ceremony.Seconds(time.Since(start).Round(time.Millisecond))
	return rep
}

// batch is the state the workers of a ResignBatch share.
type batch struct {
	s          *ceremony.Session
	rs         *ceremony.Resigner
	opts       BatchOptions
	notStarted time.Time
	jobs       chan string
	results    chan *ceremony.ResignResult
	stopped    atomic.Bool
	stopOnce   sync.Once
	stopReason string
}

// work re-signs the repositories it is given until the batch stops (a
// device failed while signing, or ctx ended); after that each is reported
// not started.
func (b *batch) work(ctx context.Context) {
	for dir := range b.jobs {
		if b.stopped.Load() || ctx.Err() != nil {
			at := b.notStarted
			if at.IsZero() {
				at = b.s.Clock()
			}
			b.results <- &ceremony.ResignResult{Repository: dir, At: at.UTC().Truncate(time.Second), Outcome: ceremony.OutcomeNotStarted}
			continue
		}
		r, err := b.rs.Resign(ctx, dir, b.opts.ResignOptions)
		var se *ceremony.SignError
		if err != nil && (errors.As(err, &se) || ctx.Err() != nil) {
			b.stopOnce.Do(func() {
				b.stopReason = err.Error()
				if ctx.Err() != nil {
					b.stopReason = "interrupted: " + ctx.Err().Error()
				}
				b.stopped.Store(true)
			})
		}
		b.results <- r
	}
}

// add counts one repository's result into the report.
func (rep *BatchReport) add(r *ceremony.ResignResult) {
	rep.Counts[r.Outcome]++
	bins, counted := ceremony.BinsOfResign(r), map[string]bool{}
	for _, role := range r.Resigned {
		if set := bins.Set(role); set != "" {
			role = set
		}
		if !counted[role] {
			counted[role] = true
			rep.Signed[role]++
		}
	}
	switch r.Outcome {
	case ceremony.OutcomeFailed, ceremony.OutcomeWaiting, ceremony.OutcomePartial, ceremony.OutcomeNotStarted:
		rep.Attention = append(rep.Attention, r)
	}
}

// ---------------------------------------------------------------------------
// The status of many repositories.

// RepoStatus is the status of one repository of many, or why it could not
// be read.
type RepoStatus struct {
	Repository string                 `json:"repository"`
	Status     *ceremony.StatusReport `json:"status,omitempty"`
	Error      string                 `json:"error,omitempty"`
	Hint       string                 `json:"hint,omitempty"`
}

// StatusMany reads the status of every repository in dirs at time at,
// several at once; the result is in the order of dirs.
func StatusMany(ctx context.Context, dirs []string, at time.Time, nworkers int) []RepoStatus {
	return StatusManyWith(ctx, nil, dirs, at, nworkers)
}

// StatusManyWith is StatusMany for a process that reads the status of the
// same repositories again and again (status --every): mem (nil for none)
// remembers each repository's last findings and exactly what they were
// found from (memory.go), and a repository whose files are all as they
// were, and where no role has expired since, is not verified again.
func StatusManyWith(ctx context.Context, mem *Memory, dirs []string, at time.Time, nworkers int) []RepoStatus {
	defer fleetGC()() // gctune.go
	out := make([]RepoStatus, len(dirs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers(nworkers), max(1, len(dirs))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(dirs) {
					return
				}
				out[i].Repository = dirs[i]
				if ctx.Err() != nil {
					out[i].Error = ctx.Err().Error()
					continue
				}
				st, err := mem.status(dirs[i], at)
				if err != nil {
					out[i].Error, out[i].Hint = err.Error(), hsm.HintOf(err)
					continue
				}
				out[i].Status = st
			}
		}()
	}
	wg.Wait()
	return out
}

// FleetSummary counts repositories by state.
type FleetSummary struct {
	Healthy, Due, Invalid, Errors int
}

// Summarize counts the states of statuses.
func Summarize(statuses []RepoStatus) FleetSummary {
	var f FleetSummary
	for _, s := range statuses {
		switch {
		case s.Status == nil:
			f.Errors++
		case s.Status.Health == ceremony.Invalid:
			f.Invalid++
		case s.Status.Health == ceremony.Due:
			f.Due++
		default:
			f.Healthy++
		}
	}
	return f
}

// currentRoles returns each role's newest entry (a repository's status
// lists every root version of its chain).
func currentRoles(st *ceremony.StatusReport) []ceremony.RoleStatus {
	idx := map[string]int{}
	var out []ceremony.RoleStatus
	for _, r := range st.Roles {
		if i, ok := idx[r.Role]; ok {
			if r.Version >= out[i].Version {
				out[i] = r
			}
			continue
		}
		idx[r.Role] = len(out)
		out = append(out, r)
	}
	return out
}
