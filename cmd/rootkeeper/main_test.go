package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// The golden CLI tests run the real binary (this test binary, re-executed
// as rootkeeper) against SoftHSM2 tokens made for each script, as an
// officer would type the commands: testdata/script/*.txtar.
//
// rootkeeper-at WHEN ARGS... is rootkeeper run as if time had passed: its
// clock (main.go) is the real clock moved by WHEN ("+2d", "-3h"), for
// scripts in which roles enter their re-signing windows. The shipped
// command has no such flag or variable: writes use the real clock, always,
// and only this test binary can move it.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"rootkeeper":    func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
		"rootkeeper-at": func() { os.Exit(runAt(os.Args[1:])) },
		// rootkeeper-craft: a properly signed repository another tool made (craft_test.go).
		"rootkeeper-craft": func() { os.Exit(craftMain(os.Args[1:])) },
		// rootkeeper-mkbundle: a signing bundle of a root change (mkbundle_test.go).
		"rootkeeper-mkbundle": func() { os.Exit(mkbundleMain(os.Args[1:])) },
	})
}

func runAt(args []string) int {
	if len(args) < 1 || len(args[0]) < 2 || (args[0][0] != '+' && args[0][0] != '-') {
		fmt.Fprintln(os.Stderr, "usage: rootkeeper-at +DURATION|-DURATION ARGS...")
		return 2
	}
	d, err := ceremony.ParseDuration(args[0][1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "rootkeeper-at:", err)
		return 2
	}
	off := d.D()
	if args[0][0] == '-' {
		off = -off
	}
	clock = func() time.Time { return time.Now().Add(off) }
	return run(args[1:], os.Stdout, os.Stderr)
}

func TestScripts(t *testing.T) {
	module, err := softhsm.ModulePath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("SoftHSM2 is required in CI: %v", err)
		}
		t.Skipf("SoftHSM2 is not installed (%v); run make deps", err)
	}
	// The PKCS#11 shim (softhsm-test/pkcs11shim) wraps SoftHSM2 to report
	// the PIN flags it never sets and to count C_Login calls: $SHIM.
	shim, err := softhsm.BuildShim(t.TempDir())
	if err != nil {
		t.Fatalf("building the PKCS#11 shim (gcc is required): %v", err)
	}
	python := icalendarPython()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       *updateGolden, // golden_test.go
		Setup: func(env *testscript.Env) error {
			tokens := filepath.Join(env.WorkDir, ".tokens")
			if err := os.MkdirAll(tokens, 0o700); err != nil {
				return err
			}
			conf := filepath.Join(env.WorkDir, ".softhsm2.conf")
			if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
				return err
			}
			pin := filepath.Join(env.WorkDir, ".pin")
			if err := os.WriteFile(pin, []byte("4321\n"), 0o600); err != nil {
				return err
			}
			bad := filepath.Join(env.WorkDir, ".badpin")
			if err := os.WriteFile(bad, []byte("0000\n"), 0o600); err != nil {
				return err
			}
			env.Setenv("SOFTHSM2_CONF", conf)
			env.Setenv("MODULE", module)
			env.Setenv("PINFILE", pin)
			env.Setenv("BADPIN", bad)
			env.Setenv("ROOTKEEPER_PKCS11_MODULE", module)
			env.Setenv("ROOTKEEPER_PIN", "")
			env.Setenv("PYTHON", python) // golden_test.go
			shimEnv(env, shim, module)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if tool, ok := strings.CutPrefix(cond, "need:"); ok { // golden_test.go
				return needTool(tool, python)
			}
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			case "pcscd": // virtual YubiKeys can run: yubikey_test.go
				return pcscdRuns()
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: withGoldenCmds(withDCT(t, withPINCmds(map[string]func(ts *testscript.TestScript, neg bool, args []string){ // dct_test.go, golden_test.go
			"vcard":      vcardCmd,      // virtual YubiKeys: yubikey_test.go
			"editbundle": editbundleCmd, // mkbundle_test.go
			// dropsigs FILE KEEP keeps only the first KEEP signatures of a
			// metadata file, as a bad mirror or a broken tool would.
			"dropsigs": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: dropsigs FILE KEEP")
				}
				p := ts.MkAbs(args[0])
				var md map[string]any
				data, err := os.ReadFile(p)
				ts.Check(err)
				ts.Check(json.Unmarshal(data, &md))
				keep, err := strconv.Atoi(args[1])
				ts.Check(err)
				sigs := md["signatures"].([]any)
				md["signatures"] = sigs[:keep]
				out, err := json.Marshal(md)
				ts.Check(err)
				ts.Check(os.WriteFile(p, out, 0o644))
			},
			// token LABEL... initialises SoftHSM tokens with user PIN 4321.
			"token": func(ts *testscript.TestScript, neg bool, args []string) {
				for _, label := range args {
					cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "87654321", "--pin", "4321")
					cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+ts.Getenv("SOFTHSM2_CONF"))
					if out, err := cmd.CombinedOutput(); err != nil {
						ts.Fatalf("softhsm2-util: %v\n%s", err, out)
					}
				}
			},
			// hashdir DIR NAME remembers a hash of every file under DIR;
			// unchanged DIR NAME fails unless DIR is byte-identical to then.
			"hashdir": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: hashdir DIR NAME")
				}
				ts.Setenv("HASH_"+args[1], treeHash(ts, ts.MkAbs(args[0])))
			},
			"unchanged": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: unchanged DIR NAME")
				}
				same := treeHash(ts, ts.MkAbs(args[0])) == ts.Getenv("HASH_"+args[1])
				if same == neg {
					ts.Fatalf("%s: byte-identical = %t", args[0], same)
				}
			},
			// lockrepo DIR holds the repository lock until unlockrepo DIR,
			// like a second rootkeeper run would.
			"lockrepo": func(ts *testscript.TestScript, neg bool, args []string) {
				p := ts.MkAbs(args[0])
				l, err := ceremony.LockRepo(p)
				ts.Check(err)
				heldMu.Lock()
				held[p] = l
				heldMu.Unlock()
				ts.Defer(func() { l.Unlock(false) })
			},
			"unlockrepo": func(ts *testscript.TestScript, neg bool, args []string) {
				p := ts.MkAbs(args[0])
				heldMu.Lock()
				defer heldMu.Unlock()
				held[p].Unlock(false)
				delete(held, p)
			},
			// tamper FILE OLD NEW replaces text in a file, as an attacker would.
			"tamper": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 3 {
					ts.Fatalf("usage: tamper FILE OLD NEW")
				}
				p := ts.MkAbs(args[0])
				data, err := os.ReadFile(p)
				ts.Check(err)
				if !strings.Contains(string(data), args[1]) {
					ts.Fatalf("%s does not contain %q", args[0], args[1])
				}
				ts.Check(os.WriteFile(p, []byte(strings.Replace(string(data), args[1], args[2], 1)), 0o644))
			},
		}))),
	})
}

// shimEnv points the PKCS#11 shim at SoftHSM2 and at the script's own
// control and log files.
func shimEnv(env *testscript.Env, shim, module string) {
	env.Setenv("SHIM", shim)
	env.Setenv(softhsm.ShimModuleEnv, module)
	env.Setenv(softhsm.ShimControlEnv, filepath.Join(env.WorkDir, ".shim-control"))
	env.Setenv(softhsm.ShimLogEnv, filepath.Join(env.WorkDir, ".logins"))
	env.Setenv(softhsm.ShimSignLogEnv, filepath.Join(env.WorkDir, ".signs"))
}

// withPINCmds adds to cmds the commands of the PIN and retry-counter
// scripts (pin_flags, pin_errors, key_usage).
func withPINCmds(cmds map[string]func(ts *testscript.TestScript, neg bool, args []string)) map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	for name, f := range map[string]func(ts *testscript.TestScript, neg bool, args []string){
		// shim LINE... sets what the PKCS#11 shim reports ("* final-try",
		// "root locked", "* low"); shim alone clears it.
		"shim": func(ts *testscript.TestScript, neg bool, args []string) {
			ts.Check(os.WriteFile(ts.Getenv(softhsm.ShimControlEnv), []byte(strings.Join(args, "\n")+"\n"), 0o600))
		},
		// logins N [TOKEN] fails unless the shim saw N C_Login calls (to
		// TOKEN, if given) since the last logins, and starts counting anew.
		"logins": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) < 1 || len(args) > 2 {
				ts.Fatalf("usage: logins N [TOKEN]")
			}
			want, err := strconv.Atoi(args[0])
			ts.Check(err)
			log := ts.Getenv(softhsm.ShimLogEnv)
			data, err := os.ReadFile(log)
			if err != nil && !os.IsNotExist(err) {
				ts.Fatalf("%v", err)
			}
			got := 0
			for _, l := range strings.Split(string(data), "\n") {
				if l != "" && (len(args) == 1 || strings.Contains(l, " token="+args[1]+" ")) {
					got++
				}
			}
			if (got == want) == neg {
				ts.Fatalf("%d C_Login calls, want %d:\n%s", got, want, data)
			}
			ts.Check(os.WriteFile(log, nil, 0o600))
		},
		// signs N [TOKEN [KEY]] fails unless the shim saw N signatures (by
		// keys on TOKEN, labelled KEY, if given) since the last signs N, or
		// if any key signed the same data twice; signs N counts anew
		// (signs_test.go, device_ops.txtar).
		"signs": signsCmd,
		// p11keypair TOKEN LABEL ID [USAGE...] makes a P-256 key pair with
		// pkcs11-tool, around rootkeeper (SoftHSM lets its private key
		// also decrypt and unwrap unless told otherwise).
		"p11keypair": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) < 3 {
				ts.Fatalf("usage: p11keypair TOKEN LABEL ID [--usage-…]")
			}
			cmd := exec.Command("pkcs11-tool", append([]string{"--module", ts.Getenv("MODULE"), "--token-label", args[0],
				"--login", "--pin", "env:" + softhsm.PINEnv, "--keypairgen", "--key-type", "EC:prime256v1",
				"--label", args[1], "--id", args[2], "--usage-sign"}, args[3:]...)...)
			cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+ts.Getenv("SOFTHSM2_CONF"), softhsm.PINEnv+"=4321")
			if out, err := cmd.CombinedOutput(); err != nil {
				ts.Fatalf("pkcs11-tool: %v\n%s", err, out)
			}
		},
	} {
		cmds[name] = f
	}
	return cmds
}

var (
	heldMu sync.Mutex
	held   = map[string]*ceremony.Lock{}
)

func treeHash(ts *testscript.TestScript, dir string) string {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			lines = append(lines, "d "+rel)
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 { // a link is part of the tree, not what it points at
			target, err := os.Readlink(p)
			lines = append(lines, "l "+rel+" "+target)
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(data)
		lines = append(lines, fmt.Sprintf("f %s %s", rel, hex.EncodeToString(h[:])))
		return nil
	})
	if err != nil {
		return "missing: " + err.Error()
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}
