// Package yubikey is rootkeeper's YubiKey PIV backend: it keeps TUF root
// keys in the PIV application of YubiKey 5 devices, through
// github.com/go-piv/piv-go/v2 and the PC/SC daemon (pcscd). It is the only
// package of rootkeeper that imports piv-go.
//
// Importing the package registers it for "yubikey:" URIs with
// [hsm.Register]:
//
//	import _ "github.com/rootkeeper/rootkeeper/hsm/yubikey"
//
// Keys are named by the device's serial number and a PIV slot, 9c (digital
// signature) or a retired key management slot 82 to 95:
//
//	yubikey:serial=12345678;slot=9c?pin-source=/run/user/1000/pin&management-key-source=/run/user/1000/mgmt
//
// Devices are chosen by serial, never by reader: every reader is first
// looked into over a short shared connection (serial, firmware, retry
// counters, whether the factory credentials are still in place), and only
// the wanted device is opened, exclusively, for the life of the backend.
// When it is not connected the officer is asked to insert it, and the
// backend waits (DefaultWait, or ROOTKEEPER_YUBIKEY_WAIT) until ctx is
// cancelled.
//
// # PINs
//
// Before any PIN is sent the retry counter is read: a blocked PIN is
// reported with the way out (the PUK), and the final try is used only with
// --force-last-pin-try (see [hsm.Options.CheckRetries]). PINs come from the
// URI's pin-source, ROOTKEEPER_PIN or the officer's prompt; a PIN of the
// wrong length is never sent. A wrong PIN is reported as an
// [*hsm.PINError] with the tries left.
//
// # Keys
//
// [Backend.Generate] creates ECDSA P-256, P-384 or Ed25519 (firmware 5.7
// and later) keys with the PIN policy always (or once) and the touch policy
// always (or cached, never). It authenticates with the management key from
// the URI's management-key-source or from the device's PIN-protected
// metadata, as [Setup] leaves it, and never with the factory default. An
// occupied slot is replaced only with GenerateOptions.Overwrite and the
// officer's confirmation.
//
// A [Signer] signs inside the device, one command at a time per device,
// tells the officer when the device waits for a touch, and verifies every
// signature with the slot's public key before returning it. A card pulled
// out in the middle of an operation is reported as such.
//
// # Attestation
//
// For every key the slot's attestation certificate and the device's
// attestation certificate (slot F9) are read and verified up to Yubico's
// PIV roots with piv.Verify — or, only when the officer passed them
// explicitly (hsm.Options.AttestationRoots, from --attestation-roots), up
// to other roots with piv.Verifier. Then what piv.Verify does not check is
// checked: the attested public key is the key in use, and the serial and
// slot are those of the URI. The result is recorded as [hsm.Evidence] (the
// certificates, serial, slot, firmware, PIN and touch policies, form factor
// and the root: "yubico" or "sha256:<fingerprint>"); [Backend.VerifyEvidence]
// checks a record again later. Firmware before 5.7 (YSA-2024-03) is
// recorded and warned about.
package yubikey
