package ceremony

import (
	"context"
	"time"

	"github.com/rootkeeper/rootkeeper/roles"
)

// state is what a plan reads: the repository as loaded under its lock,
// its key records, and the clock the change is made at.
type state struct {
	dir     string
	repo    *roles.Repo
	pol     *Policy
	records map[string]*KeyRecord
	at      time.Time
}

// newChange starts the change op of the state.
func (st *state) newChange(op string) *Change {
	return &Change{Op: op, Dir: st.dir, At: st.at, Base: st.repo.Loaded(), Repo: st.repo, Policy: st.pol, Records: st.records}
}

// stepsFor appends a step for each role, in order, then snapshot and
// timestamp.
func (c *Change) stepsFor(rs ...string) error {
	for _, r := range rs {
		st, err := c.roleStep(r)
		if err != nil {
			return err
		}
		c.Steps = append(c.Steps, st)
	}
	pub, err := c.publishSteps()
	if err != nil {
		return err
	}
	c.Steps = append(c.Steps, pub...)
	return nil
}

// change runs the pipeline on the repository in dir: under the lock
// (withLock: recovery, transcript, policy and metadata checked first),
// plan — no device — then run.
func (s *Session) change(ctx context.Context, dir string, plan func(*state) (*Change, error)) (*Result, error) {
	var res *Result
	err := s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		c, err := plan(&state{dir: dir, repo: repo, pol: pol, records: loadRecords(dir), at: s.now()})
		if err != nil {
			return err
		}
		res, err = s.run(ctx, c)
		return err
	})
	return res, err
}

// run is the rest of the pipeline for a planned change: the officer
// confirms its summary (if it has one), the local devices sign it
// (Sign), and commit runs the preflight and writes it through the
// journal.
func (s *Session) run(ctx context.Context, c *Change) (*Result, error) {
	if s.Bundle != nil {
		return s.makeBundle(ctx, c) // bundlemake.go
	}
	if c.Summary.Text != "" {
		if err := s.confirm(c.Summary.Text); err != nil {
			return nil, err
		}
	}
	if _, err := s.Sign(ctx, c, s.Local()); err != nil {
		return nil, err
	}
	return s.commit(c)
}

// retire moves the key records of the keys of before that no role trusts
// after the change to keys/retired/, with the change.
func (c *Change) retire(before []string) {
	retired, ids := retiredRecords(c.Dir, c.Repo, before) // preflight.go
	if len(ids) == 0 {
		return
	}
	if c.Details == nil {
		c.Details = map[string]any{}
	}
	c.Details["retired_key_records"] = ids
	c.Extra = append(c.Extra, retired...)
	c.Remove = append(c.Remove, retiredPaths(ids)...)
}
