package fleet

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

// Memory remembers, in the memory of one long-running process and nowhere
// else, what the last status check of each repository found
// (ceremony.StatusFacts) and a record of every input it was found from:
// each file read (its size, mode and the SHA-256 of what was read of it),
// each directory listed, each file stat'ed.
//
// A repository is checked again in full unless all of these hold: its last
// check found nothing wrong; every input, read again now, is exactly what
// it was; and no role a client checks the expiry of has expired since
// (StatusFacts.Holds). Then every check would find what it found, so its
// findings are drawn at the new time (time left, windows, health) without
// verifying the same bytes again. A repository with any problem, or one
// whose inputs changed in any way, is verified from scratch; a file that
// changed while it was being read is never remembered.
//
// Nothing is written anywhere: a Memory vouches only for bytes this
// process itself verified, and is gone with it. Its size grows with the
// fleet (about 15 kB of heap a repository; the findings of a repository with
// thousands of hashed bins are larger). A Memory is safe for concurrent
// use.
type Memory struct {
	mu    sync.Mutex
	repos map[string]*remembered
	// reused and checked count the repository checks drawn from memory
	// and those verified in full.
	reused, checked atomic.Int64
}

type remembered struct {
	facts  *ceremony.StatusFacts
	inputs []inputRecord // what they were found from (recordInputs, frozen)
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{repos: map[string]*remembered{}} }

// Counts returns how many repository checks were drawn from memory and how
// many were verified in full since the Memory was made.
func (m *Memory) Counts() (reused, checked int64) { return m.reused.Load(), m.checked.Load() }

// Keep forgets every repository but those of dirs (a long-running status
// whose list of repositories changed).
func (m *Memory) Keep(dirs []string) {
	keep := make(map[string]bool, len(dirs))
	for _, d := range dirs {
		keep[d] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := range m.repos {
		if !keep[d] {
			delete(m.repos, d)
		}
	}
}

// status is ceremony.Status of dir at at, through m (m may be nil).
func (m *Memory) status(dir string, at time.Time) (*ceremony.StatusReport, error) {
	if m == nil {
		return ceremony.Status(dir, at)
	}
	m.mu.Lock()
	r := m.repos[dir]
	m.mu.Unlock()
	if r != nil && r.facts.Holds(at) && same(os.DirFS(dirOrDot(dir)), r.inputs) {
		m.reused.Add(1)
		return r.facts.At(at), nil
	}
	m.checked.Add(1)
	in := recordInputs(os.DirFS(dirOrDot(dir)))
	facts, err := ceremony.CheckStatus(dir, in, at)
	m.mu.Lock()
	defer m.mu.Unlock()
	recs := in.freeze()
	if err != nil || recs == nil || !facts.Holds(at) {
		delete(m.repos, dir)
	} else {
		m.repos[dir] = &remembered{facts: facts, inputs: recs}
	}
	if err != nil {
		return nil, err
	}
	return facts.At(at), nil
}

func dirOrDot(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}
