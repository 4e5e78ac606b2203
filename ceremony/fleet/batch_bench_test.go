package fleet

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// Benchmarks of the scheduled job at scale (softhsm-test/bench-resign.sh
// runs them and prints the ratios; figures in docs/performance.md). Run with
// -benchtime=1x: one iteration is a whole batch.
//
//	ROOTKEEPER_BENCH_REPOS  number of repositories (default 10000)
//	ROOTKEEPER_BENCH_DIR    where to make them (default a temporary directory;
//	                        /dev/shm measures the CPU path without disk flushes)
//	ROOTKEEPER_BENCH_HISTORY  re-signs of the timestamp each repository has had
//	                        before (default 0): its transcript has as many
//	                        entries more, as a repository a year into daily
//	                        re-signing (365) has

// benchDay is the day the fleet's roots are due (and nothing else).
const benchDay = 45

func benchRepos() int {
	if n, err := strconv.Atoi(os.Getenv("ROOTKEEPER_BENCH_REPOS")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// benchFleet makes n repositories whose root (60d, window 20d) is the only
// role due on day benchDay, all with the same keys.
func benchFleet(b *testing.B, n int) (*fixture, []string) {
	b.Helper()
	f := newFixtureWith(b, map[string]string{ceremony.RoleRoot: "60d", ceremony.RoleTargets: "730d", ceremony.RoleSnapshot: "365d", ceremony.RoleTimestamp: "90d"})
	if h, _ := strconv.Atoi(os.Getenv("ROOTKEEPER_BENCH_HISTORY")); h > 0 {
		benchHistory(b, f, h)
	}
	base := os.Getenv("ROOTKEEPER_BENCH_DIR")
	if base == "" {
		base = b.TempDir()
	} else {
		var err error
		if base, err = os.MkdirTemp(base, "rootkeeper-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(base) })
	}
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(base, fmt.Sprintf("repo-%05d", i))
		copyTree(b, f.dir, dirs[i])
	}
	return f, dirs
}

// benchHistory re-signs the fixture's timestamp h times, an hour apart
// from day 1 (before the root is due on day benchDay): h transcript
// entries more.
func benchHistory(b *testing.B, f *fixture, h int) {
	b.Helper()
	if h > (benchDay-2)*24 {
		b.Fatalf("ROOTKEEPER_BENCH_HISTORY=%d: at most %d", h, (benchDay-2)*24)
	}
	ctx := context.Background()
	for i := range h {
		f.setNow(day(1).Add(time.Duration(i) * time.Hour))
		r, err := f.s.Resign(ctx, f.dir, ceremony.ResignOptions{Roles: []string{ceremony.RoleTimestamp}})
		if err != nil || r.Outcome != ceremony.OutcomeResigned {
			b.Fatalf("history %d: %v %+v", i, err, r)
		}
	}
	f.setNow(t0)
}

// rawSignFloor signs n SHA-256 digests with the P-256 key labelled object
// on the token labelled token through bare miekg/pkcs11 calls
// (C_SignInit + C_Sign on one session), and returns the time taken: the
// fastest the token can sign. Call done once every session of the module
// is closed: it finalizes the module if this call initialized it.
func rawSignFloor(b *testing.B, module, token, object string, n int) (floor time.Duration, done func()) {
	b.Helper()
	p := pkcs11.New(module)
	if p == nil {
		b.Fatalf("cannot load %s", module)
	}
	done = func() {}
	if err := p.Initialize(); err != nil {
		if e, ok := err.(pkcs11.Error); !ok || e != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			b.Fatal(err)
		}
	} else {
		done = func() { p.Finalize() }
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		b.Fatal(err)
	}
	var slot uint
	found := false
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err == nil && trimPad(ti.Label) == token {
			slot, found = s, true
		}
	}
	if !found {
		b.Fatalf("no token %q", token)
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		b.Fatal(err)
	}
	defer p.CloseSession(sh)
	if err := p.Login(sh, pkcs11.CKU_USER, softhsm.PIN); err != nil {
		if e, ok := err.(pkcs11.Error); !ok || e != pkcs11.CKR_USER_ALREADY_LOGGED_IN {
			b.Fatal(err)
		}
	}
	if err := p.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, object)}); err != nil {
		b.Fatal(err)
	}
	objs, _, err := p.FindObjects(sh, 2)
	p.FindObjectsFinal(sh)
	if err != nil || len(objs) != 1 {
		b.Fatalf("private key %q: %v (%d found)", object, err, len(objs))
	}
	digest := sha256.Sum256([]byte("a root.json"))
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	start := time.Now()
	for range n {
		if err := p.SignInit(sh, mech, objs[0]); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Sign(sh, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start), done
}

func trimPad(s string) string {
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == 0) {
		s = s[:len(s)-1]
	}
	return s
}

func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// BenchmarkResignBatch re-signs the root of every repository of a fleet
// (ROOTKEEPER_BENCH_REPOS, default 10,000) with one SoftHSM P-256 root key
// in one session, and measures in the same run, with the same key, the
// raw C_Sign floor for as many signatures and the bare go-tuf loop over
// copies of the same repositories (peer_bench_test.go). Metrics: x-floor
// (batch time / floor time), x-loop and x-loop-cpu (batch / loop, wall and
// CPU time), µs per repository, per raw signature and per repository of
// the loop, CPU µs per repository, live heap at 10% and at 100% of the
// batch (it must not grow with the number of repositories).
func BenchmarkResignBatch(b *testing.B) {
	n := benchRepos()
	f, dirs := benchFleet(b, n)
	f.reopen(b)
	ctx := context.Background()
	floor, finalize := rawSignFloor(b, f.env.ModulePath, "root", "root", n)
	defer finalize()
	defer f.s.Close()
	peers := peerFleet(b, dirs)
	rootKey, err := f.s.Open(ctx, f.env.URI("root", "root")) // the batch's key: its login is done here
	if err != nil {
		b.Fatal(err)
	}
	loop, loopCPU := goTUFLoop(b, peers, rootKey.HW, rootKey.ID(), day(benchDay), 60*24*time.Hour)
	checkPeer(b, peers[0])
	jobs, _ := strconv.Atoi(os.Getenv("ROOTKEEPER_BENCH_JOBS"))
	var heap10, heap100 float64
	b.ResetTimer()
	var elapsed, cpu time.Duration
	for i := 0; b.Loop(); i++ {
		f.setNow(day(benchDay + i))
		opts := BatchOptions{ResignOptions: ceremony.ResignOptions{Roles: []string{ceremony.RoleRoot}}, Workers: jobs}
		opts.Progress = func(done, total int, r *ceremony.ResignResult) {
			if r.Outcome != ceremony.OutcomeResigned {
				b.Fatalf("%s: %s %s", r.Repository, r.Outcome, r.Error)
			}
			if i == 0 && done == total/10 {
				b.StopTimer()
				heap10 = heapMB()
				b.StartTimer()
			}
		}
		start, cpu0 := time.Now(), cpuTime()
		rep := ResignBatch(ctx, f.s, dirs, opts)
		elapsed += time.Since(start)
		cpu += cpuTime() - cpu0
		if rep.Counts[ceremony.OutcomeResigned] != n {
			b.Fatalf("%v", rep.Counts)
		}
		if i == 0 {
			b.StopTimer()
			heap100 = heapMB()
			b.StartTimer()
		}
	}
	b.StopTimer()
	// go-tuf's client over the batch's outputs, same run: what checking
	// them as a client would costs at the least.
	client, clientCPU := goTUFClients(b, dirs, day(benchDay))
	per := elapsed / time.Duration(b.N)
	b.ReportMetric(float64(client.Microseconds())/float64(n), "client-µs/repo")
	b.ReportMetric(float64(clientCPU.Microseconds())/float64(n), "client-cpu-µs/repo")
	b.ReportMetric(float64(loopCPU.Microseconds())/float64(n), "loop-cpu-µs/repo")
	b.ReportMetric(float64(per)/float64(floor), "x-floor")
	b.ReportMetric(float64(per)/float64(loop), "x-loop")
	b.ReportMetric(float64(cpu)/float64(b.N)/float64(loopCPU), "x-loop-cpu")
	b.ReportMetric(float64(loop.Microseconds())/float64(n), "loop-µs/repo")
	b.ReportMetric(float64(per.Microseconds())/float64(n), "µs/repo")
	b.ReportMetric(float64(floor.Nanoseconds())/1e3/float64(n), "floor-µs/sig")
	b.ReportMetric(heap10, "heapMB@10%")
	b.ReportMetric(heap100, "heapMB@100%")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/float64(n), "cpu-µs/repo")
	b.ReportMetric(float64(n), "repos")
}

// cpuTime is the CPU time (user and system) the process has used: less
// sensitive than wall time to other jobs on a shared machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStatusMany reads the status of every repository of a fleet
// (ROOTKEEPER_BENCH_REPOS, default 10,000) the way the scheduled
// `rootkeeper status --repos … --prometheus FILE` does, metrics included.
func BenchmarkStatusMany(b *testing.B) {
	n := benchRepos()
	_, dirs := benchFleet(b, n)
	prom := filepath.Join(b.TempDir(), "rootkeeper.prom")
	ctx := context.Background()
	// The floor, same run: go-tuf's client alone over the same repositories.
	client, clientCPU := goTUFClients(b, dirs, day(benchDay))
	var cpu, elapsed time.Duration
	b.ResetTimer()
	for b.Loop() {
		start, cpu0 := time.Now(), cpuTime()
		sts := StatusMany(ctx, dirs, day(benchDay), 0)
		if s := Summarize(sts); s.Due != n {
			b.Fatalf("%+v", s)
		}
		if err := WritePrometheus(prom, day(benchDay), sts); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - cpu0
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/float64(n), "cpu-µs/repo")
	b.ReportMetric(float64(client.Microseconds())/float64(n), "client-µs/repo")
	b.ReportMetric(float64(clientCPU.Microseconds())/float64(n), "client-cpu-µs/repo")
	b.ReportMetric(float64(elapsed)/float64(b.N)/float64(client), "x-client")
	b.ReportMetric(float64(cpu)/float64(b.N)/float64(clientCPU), "x-client-cpu")
	b.ReportMetric(float64(n), "repos")
}

// BenchmarkStatusEvery is the long-running `rootkeeper status --repos …
// --prometheus FILE --every D`: after a first pass that verifies every
// repository (not timed), each pass (one an hour later each) reads every
// file again and compares it with what the last verification read, and
// draws the unchanged repositories' status from memory (Memory), metrics
// file included.
func BenchmarkStatusEvery(b *testing.B) {
	n := benchRepos()
	_, dirs := benchFleet(b, n)
	prom := filepath.Join(b.TempDir(), "rootkeeper.prom")
	ctx := context.Background()
	mem := NewMemory()
	at := day(benchDay)
	StatusManyWith(ctx, mem, dirs, at, 0)
	var cpu time.Duration
	b.ResetTimer()
	for b.Loop() {
		at = at.Add(time.Hour)
		cpu0 := cpuTime()
		sts := StatusManyWith(ctx, mem, dirs, at, 0)
		if s := Summarize(sts); s.Due != n {
			b.Fatalf("%+v", s)
		}
		if err := WritePrometheus(prom, at, sts); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - cpu0
	}
	b.StopTimer()
	if reused, checked := mem.Counts(); checked != int64(n) || reused != int64(b.N*n) {
		b.Fatalf("%d drawn from memory, %d verified: want %d and %d", reused, checked, b.N*n, n)
	}
	// What the Memory holds: the live heap with it and without it.
	with := heapMB()
	runtime.KeepAlive(mem)
	mem = nil
	b.ReportMetric((with-heapMB())*1024/float64(n), "memory-kB/repo")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/float64(n), "cpu-µs/repo")
	b.ReportMetric(float64(n), "repos")
}

// BenchmarkVerifyRepository is roles.Verify (what every preflight and
// status runs) of one repository of the batch after its root was re-signed
// (root v1 and v2, timestamp, snapshot, targets), beside go-tuf's own
// client over the same files (trustedmetadata from 1.root.json to targets):
// its floor, in the same run.
func BenchmarkVerifyRepository(b *testing.B) {
	f, dirs := benchFleet(b, 1)
	f.reopen(b)
	defer f.s.Close()
	f.setNow(day(benchDay))
	rep := ResignBatch(context.Background(), f.s, dirs, BatchOptions{ResignOptions: ceremony.ResignOptions{Roles: []string{ceremony.RoleRoot}}})
	if rep.Counts[ceremony.OutcomeResigned] != 1 {
		b.Fatalf("%v", rep.Counts)
	}
	b.Run("go-tuf-client", func(b *testing.B) {
		for b.Loop() {
			if err := goTUFClient(dirs[0], day(benchDay)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rootkeeper", func(b *testing.B) {
		for b.Loop() {
			r, err := roles.Verify(os.DirFS(dirs[0]), roles.VerifyOptions{At: day(benchDay)})
			if err != nil || !r.OK {
				b.Fatalf("%v %+v", err, r)
			}
		}
	})
}
