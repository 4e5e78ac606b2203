package pkcs11

import (
	"errors"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// driver is the part of *pkcs11.Ctx the backend calls. It is narrow so that
// a fake (or a wrapper over the real module) can stand beside the real
// driver in tests.
type driver interface {
	Initialize(opts ...pkcs11.InitializeOption) error
	Finalize() error
	GetInfo() (pkcs11.Info, error)
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	Logout(sh pkcs11.SessionHandle) error
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error)
	DestroyObject(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error
	SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
}

var _ driver = (*pkcs11.Ctx)(nil)

// errLoad reports a module that dlopen could not load or that has no
// C_GetFunctionList.
var errLoad = errors.New("cannot load the module (dlopen failed or it has no C_GetFunctionList)")

// loadDriver loads the module at path. Tests replace it to put a fake or a
// wrapper beside the real module.
var loadDriver = func(path string) (driver, error) {
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, errLoad
	}
	return ctx, nil
}

// Mechanisms, key types and return values that miekg/pkcs11 v1.1.2 does
// not define (PKCS#11 v3.0).
const (
	ckkECEdwards           = 0x00000040 // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen = 0x00001055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA               = 0x00001057 // CKM_EDDSA
)

// rv returns the PKCS#11 return value in err, or 0.
func rv(err error) uint {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e)
	}
	return 0
}

// pinString views pin as a string without copying it, so that wiping pin
// afterwards leaves no copy in Go memory. The driver copies it into C
// memory for the length of C_Login only.
func pinString(pin []byte) string {
	if len(pin) == 0 {
		return ""
	}
	return unsafe.String(&pin[0], len(pin))
}
