// Package pivcard emulates a YubiKey 5 PIV applet as a virtual smart card
// behind the real PC/SC stack, for rootkeeper's tests:
//
//	piv-go v2 → libpcsclite → pcscd → vpcd (vsmartcard) → pivcard (TCP)
//
// pcscd's vpcd driver listens on 127.0.0.1:35963 and :35964 (readers
// "Virtual PCD 00 00" and "Virtual PCD 00 01"); a Card dials one of them and
// answers APDUs exactly as far as piv-go v2 and rootkeeper need: select,
// version, serial, PIN/PUK verify, change and unblock with real retry
// counting, set retries, reset, management-key mutual authentication (3DES
// and AES), set management key, key generation and import (P-256, P-384,
// and Ed25519 from firmware 5.7), key metadata, signing with PIN and touch
// policies enforced, ECDH, attestation under a test CA, data objects,
// command chaining and GET RESPONSE. RSA keys are not emulated (the card
// answers 6A80). Private keys live in memory only.
//
// In tests, StartCard does everything: it starts pcscd (see pcscd.sh),
// takes a machine-wide lock on the vpcd slot, inserts the card and waits
// until piv-go sees it:
//
//	card := pivcard.StartCard(t, pivcard.Config{Serial: 12345678}, 0)
//	yk, err := piv.Open(card.Reader())
//
// The CA that issues attestations is a test CA: production code must
// accept it only when an operator passes it explicitly. This package is
// test infrastructure and must never be imported by non-test code.
package pivcard
