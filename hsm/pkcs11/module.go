package pkcs11

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
	"github.com/rootkeeper/rootkeeper/hsm"
)

// ModuleEnv is the environment variable that names the PKCS#11 module when
// a URI has no module-path.
const ModuleEnv = "ROOTKEEPER_PKCS11_MODULE"

// ModulePaths are the usual install paths of PKCS#11 modules, tried in
// order when neither the URI's module-path nor [ModuleEnv] names one.
var ModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
	"/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
	"/usr/lib64/opensc-pkcs11.so",
	"/usr/lib/x86_64-linux-gnu/libykcs11.so",
	"/usr/lib/aarch64-linux-gnu/libykcs11.so",
	"/usr/local/lib/libykcs11.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
	"/usr/local/opt/softhsm/lib/softhsm/libsofthsm2.so",
}

// modulePath returns the module for uri: its module-path, else the module
// its module-name names in p11-kit's module configuration, else the
// environment's ROOTKEEPER_PKCS11_MODULE, else the first of ModulePaths
// that exists. Only a URI with none of these reaches the built-in search.
func modulePath(uri *hsm.URI, getenv func(string) string) (string, error) {
	check := func(path, from string) (string, error) {
		fi, err := os.Stat(path)
		if err != nil || fi.IsDir() || !strings.HasPrefix(path, "/") {
			detail := fmt.Sprintf("no PKCS#11 module at %s (from %s)", path, from)
			if err == nil && !strings.HasPrefix(path, "/") {
				detail = fmt.Sprintf("PKCS#11 module path %s (from %s) is not absolute", path, from)
			}
			return "", &hsm.Error{Kind: hsm.ErrModuleNotFound, URI: uri.Object(), Detail: detail, Err: err,
				HintText: "give the absolute path of the token's PKCS#11 module in " + from +
					" (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so from the softhsm2 package; OpenSC: opensc-pkcs11.so; YubiKey: libykcs11.so)"}
		}
		return path, nil
	}
	if p, ok := uri.Query("module-path"); ok {
		return check(p, "the URI's module-path")
	}
	if name, ok := uri.Query("module-name"); ok {
		p, conf, err := moduleByName(name)
		if err != nil {
			err.URI = uri.Object()
			return "", err
		}
		return check(p, "module-name="+name+" in "+conf)
	}
	if p := getenv(ModuleEnv); p != "" {
		return check(p, ModuleEnv)
	}
	for _, p := range ModulePaths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", &hsm.Error{Kind: hsm.ErrModuleNotFound, URI: uri.Object(),
		Detail: "no PKCS#11 module: the URI has no module-path, " + ModuleEnv + " is not set and none of " +
			strings.Join(ModulePaths, ", ") + " exists",
		HintText: "add ?module-path=/path/to/module.so to the URI or set " + ModuleEnv +
			" (install SoftHSM2 with: apt-get install softhsm2)"}
}

// modules holds every module loaded in the process, by path. A module is
// loaded (dlopen) once and stays loaded; it is initialized while at least
// one backend uses it and finalized when the last one closes, so that a
// later C_Initialize rereads its configuration.
var (
	modulesMu sync.Mutex
	modules   = map[string]*module{}
)

// moduleKey names a module file by its resolved path, so that two paths
// to one library (Debian links /usr/lib/softhsm/libsofthsm2.so to the
// multiarch directory) share one module.
func moduleKey(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		return p
	}
	return path
}

// module is one loaded PKCS#11 library.
type module struct {
	path string
	drv  driver

	mu       sync.Mutex // guards the fields below
	refs     int
	ownsInit bool              // C_Initialize was ours, so C_Finalize is too
	tokens   map[string]*token // open tokens by slot, serial and label
}

// acquireModule loads the module at path if needed, initializes it if no
// backend uses it yet, and counts a reference to it.
func acquireModule(path string, uri *hsm.URI) (*module, error) {
	key := moduleKey(path)
	modulesMu.Lock()
	m := modules[key]
	if m == nil {
		drv, err := loadDriver(path)
		if err != nil {
			modulesMu.Unlock()
			return nil, &hsm.Error{Kind: hsm.ErrModuleNotFound, URI: uri.Object(),
				Detail: path + " is not a usable PKCS#11 module", Err: err,
				HintText: "check that module-path names the token's PKCS#11 library (a .so exporting C_GetFunctionList) built for this machine"}
		}
		m = &module{path: path, drv: drv}
		modules[key] = m
	}
	modulesMu.Unlock()

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs == 0 {
		err := m.drv.Initialize()
		switch {
		case err == nil:
			m.ownsInit = true
		case rv(err) == pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED:
			m.ownsInit = false
		default:
			return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "C_Initialize of " + path + " failed", Err: err,
				HintText: "check the module's configuration (SoftHSM2: SOFTHSM2_CONF and its token directory) and that the device is connected"}
		}
		m.tokens = map[string]*token{}
	}
	m.refs++
	return m, nil
}

// release drops a reference. The last one logs out of every token, closes
// every session and finalizes the module.
func (m *module) release() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs == 0 {
		return nil
	}
	m.refs--
	if m.refs > 0 {
		return nil
	}
	var first error
	for _, t := range m.tokens {
		if err := t.shut(); err != nil && first == nil {
			first = err
		}
	}
	m.tokens = nil
	if m.ownsInit {
		if err := m.drv.Finalize(); err != nil && first == nil {
			first = &hsm.Error{Kind: hsm.ErrDevice, Detail: "C_Finalize of " + m.path + " failed", Err: err}
		}
	}
	return first
}

// libraryAttrs are the URI path attributes that name the module, with the
// CK_INFO field each one matches.
var libraryAttrs = []struct {
	name  string
	field func(pkcs11.Info) string
}{
	{"library-manufacturer", func(i pkcs11.Info) string { return i.ManufacturerID }},
	{"library-description", func(i pkcs11.Info) string { return i.LibraryDescription }},
}

// checkLibrary compares the URI's library-manufacturer, library-description
// and library-version with the module's C_GetInfo, so that a URI meant for
// one module is never served by another.
func (m *module) checkLibrary(uri *hsm.URI) error {
	var wants []string
	for _, a := range libraryAttrs {
		if _, ok := uri.Path(a.name); ok {
			wants = append(wants, a.name)
		}
	}
	ver, hasVer := uri.Path("library-version")
	if len(wants) == 0 && !hasVer {
		return nil
	}
	info, err := m.drv.GetInfo()
	if err != nil {
		return &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "C_GetInfo of " + m.path + " failed", Err: err,
			HintText: "the URI's library- attributes need the module's C_GetInfo: drop them, or use a module that answers it"}
	}
	have := fmt.Sprintf("library-manufacturer=%s;library-description=%s;library-version=%d.%d",
		clean(info.ManufacturerID), clean(info.LibraryDescription), info.LibraryVersion.Major, info.LibraryVersion.Minor)
	mismatch := func(what string) error {
		return &hsm.Error{Kind: hsm.ErrModuleNotFound, URI: uri.Object(),
			Detail:   fmt.Sprintf("the module %s is not the library the URI names: its %s differs (it says %s)", m.path, what, have),
			HintText: "name the module the URI means with module-path= or module-name= (or " + ModuleEnv + "), or fix the URI's library- attributes"}
	}
	for _, a := range libraryAttrs {
		if want, ok := uri.Path(a.name); ok && clean(a.field(info)) != want {
			return mismatch(a.name)
		}
	}
	if hasVer {
		major, minor, err := hsm.ParseLibraryVersion(ver)
		if err != nil {
			return &hsm.Error{Kind: hsm.ErrUnsupported, URI: uri.Object(), Detail: err.Error()}
		}
		if info.LibraryVersion.Major != major || info.LibraryVersion.Minor != minor {
			return mismatch("library-version")
		}
	}
	return nil
}
