package pkcs11

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// P11KitConfigDirs are the directories of p11-kit's module configuration
// files (NAME.module), in the order p11-kit reads them: the packages'
// configuration, then the system administrator's, whose settings override
// the packages'. A URI's module-name=NAME loads the module the "module:"
// setting of NAME.module names. Per-user configuration
// (~/.config/pkcs11/modules) is not read: a user's environment must not
// redirect a root key's URI to another library.
var P11KitConfigDirs = []string{"/usr/share/p11-kit/modules", "/etc/pkcs11/modules"}

// P11KitModuleDirs are where p11-kit loads a module whose "module:"
// setting is a relative path (its p11_module_path); the first that holds
// the file is used.
var P11KitModuleDirs = p11kitModuleDirs()

func p11kitModuleDirs() []string {
	multiarch := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu",
		"arm": "arm-linux-gnueabihf", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu"}[runtime.GOARCH]
	var dirs []string
	if multiarch != "" {
		dirs = append(dirs, "/usr/lib/"+multiarch+"/pkcs11")
	}
	return append(dirs, "/usr/lib64/pkcs11", "/usr/lib/pkcs11", "/usr/local/lib/pkcs11")
}

// validModuleName is p11-kit's rule for configuration file names.
func validModuleName(name string) bool {
	if name == "" || len(name) > 200 {
		return false
	}
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("_.,-", r)) {
			return false
		}
	}
	return true
}

// moduleByName resolves a module-name the way p11-kit does: the "module:"
// setting of NAME.module, the last configuration directory's winning. It
// returns the module's path and the configuration file that named it.
func moduleByName(name string) (path, conf string, err *hsm.Error) {
	fail := func(detail string) (string, string, *hsm.Error) {
		return "", "", &hsm.Error{Kind: hsm.ErrModuleNotFound, Detail: detail,
			HintText: "module-name= names a p11-kit module configuration (NAME.module in " + strings.Join(P11KitConfigDirs, " or ") +
				"; p11-kit list-modules shows them): fix the name, or give the module's file with module-path="}
	}
	if !validModuleName(name) {
		return fail(fmt.Sprintf("module-name=%q is not a p11-kit module name (letters, digits, _ . , -)", name))
	}
	found := false
	for _, dir := range P11KitConfigDirs {
		f := filepath.Join(dir, name+".module")
		value, set, rerr := readModuleSetting(f)
		if os.IsNotExist(rerr) {
			continue
		}
		if rerr != nil {
			return fail(fmt.Sprintf("module-name=%s: cannot read %s: %v", name, f, rerr))
		}
		found = true
		if set {
			path, conf = value, f
		}
	}
	switch {
	case !found:
		return fail(fmt.Sprintf("module-name=%s: no p11-kit module configuration %s.module in %s", name, name, strings.Join(P11KitConfigDirs, ", ")))
	case conf == "":
		return fail(fmt.Sprintf("module-name=%s: its p11-kit configuration has no module: setting", name))
	case path == "":
		return fail(fmt.Sprintf("module-name=%s: %s disables the module (module: is empty)", name, conf))
	}
	if filepath.IsAbs(path) {
		return path, conf, nil
	}
	for _, dir := range P11KitModuleDirs {
		if fi, err := os.Stat(filepath.Join(dir, path)); err == nil && !fi.IsDir() {
			return filepath.Join(dir, path), conf, nil
		}
	}
	return fail(fmt.Sprintf("module-name=%s: %s names %s, which is in none of %s", name, conf, path, strings.Join(P11KitModuleDirs, ", ")))
}

// readModuleSetting reads the "module:" setting of a p11-kit configuration
// file: "name: value" lines, blank lines and "#" comments ignored.
func readModuleSetting(file string) (value string, set bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "module" {
			value, set = strings.TrimSpace(v), true
		}
	}
	return value, set, sc.Err()
}
