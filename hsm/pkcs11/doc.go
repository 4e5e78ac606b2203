// Package pkcs11 is rootkeeper's PKCS#11 backend: it keeps TUF root keys in
// any token with a PKCS#11 module (SoftHSM2, a network HSM, a smart card
// through OpenSC, a YubiKey through ykcs11).
//
// Importing the package registers it for "pkcs11:" URIs with
// [hsm.Register]:
//
//	import _ "github.com/rootkeeper/rootkeeper/hsm/pkcs11"
//
// Keys are named by RFC 7512 URIs:
//
//	pkcs11:token=root-a;object=root-1;id=%3A%10?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/run/user/1000/pin
//
// The path attributes token, serial, manufacturer and model select the
// token (never the slot: slot-id and the other slot attributes are
// refused, since SoftHSM2 reassigns slots); object (the CKA_LABEL), id (the
// CKA_ID, percent-encoded bytes) and type=private select the key; the
// library-manufacturer, library-description and library-version
// attributes must match the module's C_GetInfo. The query attribute
// module-path names the module, or module-name names a p11-kit module
// configuration ([P11KitConfigDirs]); without either the module named by
// ROOTKEEPER_PKCS11_MODULE is used, else the first of [ModulePaths] that
// exists. Each module is loaded once per process and each token is logged
// in to once, with a PIN read by [hsm.Options.ReadPIN] after the token's PIN
// flags and PIN length limits were checked: a locked PIN is reported
// without sending anything, a PIN at its final try is sent only with
// --force-last-pin-try, and a PIN outside ulMinPinLen..ulMaxPinLen is not
// sent. A token that refused a PIN is sent no other PIN until every
// backend of the process is closed.
//
// Keys are generated inside the token as token objects that are private,
// sensitive and not extractable, that can only sign (CKA_DECRYPT,
// CKA_UNWRAP, CKA_DERIVE and CKA_SIGN_RECOVER false), and their attributes
// CKA_LOCAL, CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE, and what else
// the private key allows, are read back as [hsm.Evidence]. A [Signer] finds the public key first and the private key
// through the public key's CKA_ID, checks that the two belong together, and
// signs inside the token: ECDSA P-256 and P-384 (CKM_ECDSA), Ed25519
// (CKM_EDDSA) and RSA-PSS (CKM_RSA_PKCS_PSS, salt length equal to the hash
// length).
//
// This is the only package of rootkeeper that imports
// github.com/miekg/pkcs11.
package pkcs11
