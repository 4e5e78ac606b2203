package pkcs11

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// p11kitDirs points module-name resolution at configuration and module
// directories of the test's own for the rest of the test.
func p11kitDirs(t *testing.T) (pkgConf, sysConf, modDir string) {
	t.Helper()
	root := t.TempDir()
	pkgConf, sysConf, modDir = filepath.Join(root, "share"), filepath.Join(root, "etc"), filepath.Join(root, "lib")
	for _, d := range []string{pkgConf, sysConf, modDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	oldConf, oldMod := P11KitConfigDirs, P11KitModuleDirs
	P11KitConfigDirs, P11KitModuleDirs = []string{pkgConf, sysConf}, []string{filepath.Join(root, "nowhere"), modDir}
	t.Cleanup(func() { P11KitConfigDirs, P11KitModuleDirs = oldConf, oldMod })
	return pkgConf, sysConf, modDir
}

func TestModuleName(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	pkgConf, sysConf, modDir := p11kitDirs(t)
	conf := func(dir, name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name+".module"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(env.ModulePath, filepath.Join(modDir, "libsofthsm2.so")); err != nil {
		t.Fatal(err)
	}
	conf(pkgConf, "abs", "# comment\n\nmodule: "+env.ModulePath+"\ncritical: no\n")
	conf(pkgConf, "rel", "module:libsofthsm2.so\n")
	conf(pkgConf, "overridden", "module: /nonexistent/vendor.so\n")
	conf(sysConf, "overridden", "module: "+env.ModulePath+"\n")
	conf(pkgConf, "merged", "module: "+env.ModulePath+"\n")
	conf(sysConf, "merged", "critical: yes\n")
	conf(pkgConf, "disabled", "module: "+env.ModulePath+"\n")
	conf(sysConf, "disabled", "module:\n")
	conf(pkgConf, "nomodule", "critical: yes\n")
	conf(pkgConf, "missing", "module: libvendor.so\n")
	b := open(t, hsm.Options{})
	for _, name := range []string{"abs", "rel", "overridden", "merged"} {
		if _, err := b.List(bg, parse(t, "pkcs11:token=root-a?module-name="+name+"&pin-source="+env.PINFile)); err != nil {
			t.Errorf("module-name=%s: %v", name, err)
		}
	}
	if len(b.modules) != 1 {
		t.Errorf("%d modules loaded for one library", len(b.modules))
	}
	for name, want := range map[string]string{
		"disabled":  "disables the module (module: is empty)",
		"nomodule":  "has no module: setting",
		"missing":   "names libvendor.so, which is in none of",
		"nope":      "no p11-kit module configuration nope.module in",
		"../etc/x":  "is not a p11-kit module name",
		".hidden":   "is not a p11-kit module name",
		"softhsm 2": "is not a p11-kit module name",
	} {
		u, err := hsm.ParseURI("pkcs11:token=root-a?pin-source=" + env.PINFile)
		if err != nil {
			t.Fatal(err)
		}
		u.SetQuery("module-name", name)
		_, err = b.List(bg, u)
		wantKind(t, err, hsm.ErrModuleNotFound)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("module-name=%s: %v, want %q", name, err, want)
		}
	}
	// A module-name never falls back to the environment or the search.
	b2 := open(t, hsm.Options{Getenv: func(k string) string {
		if k == ModuleEnv {
			return env.ModulePath
		}
		return ""
	}})
	_, err := b2.List(bg, parse(t, "pkcs11:token=root-a?module-name=vendor-hsm&pin-source="+env.PINFile))
	wantKind(t, err, hsm.ErrModuleNotFound)
}

// TestLibraryAttributes compares library-manufacturer, -description and
// -version with SoftHSM's C_GetInfo.
func TestLibraryAttributes(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	b := open(t, hsm.Options{})
	generate(t, b, env.URI("root-a", "k"), hsm.ECDSAP256)
	info, err := b.modules[moduleKey(env.ModulePath)].drv.GetInfo()
	if err != nil {
		t.Fatal(err)
	}
	version := func(major, minor byte) string { return fmt.Sprintf("%d.%d", major, minor) }
	v := info.LibraryVersion
	uri := func(attrs string) *hsm.URI {
		return parse(t, strings.Replace(env.URI("root-a", "k"), ";object=k", ";object=k;"+attrs, 1))
	}
	good := "library-manufacturer=" + escape(clean(info.ManufacturerID)) + ";library-description=" + escape(clean(info.LibraryDescription)) +
		";library-version=" + version(v.Major, v.Minor)
	if _, err := b.Signer(bg, uri(good)); err != nil {
		t.Fatalf("%s: %v", good, err)
	}
	for _, bad := range []string{"library-manufacturer=Nope", "library-description=Vendor%20HSM", "library-version=" + version(v.Major+1, 0),
		"library-version=" + version(v.Major, v.Minor+1)} {
		_, err := b.Signer(bg, uri(bad))
		wantKind(t, err, hsm.ErrModuleNotFound)
		if !strings.Contains(err.Error(), "is not the library the URI names") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	// "M" is M.0.
	_, err = b.Signer(bg, uri(fmt.Sprintf("library-version=%d", v.Major)))
	if (err == nil) != (v.Minor == 0) {
		t.Errorf("library-version=%d against %d.%d: %v", v.Major, v.Major, v.Minor, err)
	}
}
