// Package hsm is rootkeeper's hardware boundary.
//
// It names keys by URI, lists the algorithms rootkeeper generates, defines
// the small interface a hardware backend implements (generate a key, open a
// signer, list keys, attest, close) and the typed errors an officer can act
// on. It uses the standard library only: the drivers live in the backends
// (hsm/pkcs11 and hsm/yubikey), which register themselves with [Register].
//
// Private keys never cross this boundary. A backend hands out
// [crypto.Signer] values whose Sign runs inside the device, and public keys.
// PINs are read by [Options.ReadPIN] from a pin-source file named in the
// URI, from the ROOTKEEPER_PIN environment variable, or from the prompt the
// caller supplies — never from the URI itself (a pin-value attribute is
// refused) and never from a default. What cannot be a PIN is never sent,
// and what might be a PIN is never printed ([Redact], [ShowSource]).
package hsm
