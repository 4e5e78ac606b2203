// Package ceremony runs every change of a TUF repository as one pipeline
// of four steps, and the reads (status, verify, key records).
//
//  1. Plan. A pure function of the repository as loaded under its lock
//     (state: metadata, policy, key records, the clock) and the officer's
//     inputs — planTargets, planPublish, planDelegate, planDelegateRemove,
//     planRotate, revokeChange (after planRevoke), planInit, and the resign
//     run's change — makes a *Change: the new metadata with the changed
//     roles bumped and unsigned, the Steps that sign it in order (each with
//     the thresholds it must meet: its Needs, and for a new root those of
//     the previous root too), the summary the officer confirms, and what
//     the commit writes besides the metadata. No device is touched; inputs
//     that need a device (the public keys of keys being added, a key named
//     by URI without a key record) are read before the plan is made.
//
//  2. Sign. Session.Sign is the one signing routine. Step by step it makes
//     snapshot and timestamp from what was signed before them (Step.Follow)
//     and asks signature sources for signatures over each role's canonical
//     bytes (Change.Payload): LocalSource opens each key once through the
//     session (PIN retries read first, by hsm) and verifies each signature
//     at once; signatures brought back in a signing bundle are another
//     source. One rule for absent keys: a key that cannot sign is reported,
//     the others go on, and the thresholds decide — distinct keys counted,
//     the same public key under two key ids once. An unmet step ends with a
//     *ThresholdError or *RootSignaturesError naming every key still
//     missing and the devices that were not there.
//
//  3. Preflight. The files the change writes, laid over the repository,
//     are verified as the strictest client would (preflightChange).
//
//  4. Commit. Session.commit is the one write path: commitFiles
//     (journal.go), journaled, all or nothing, the transcript entry last
//     before the publish point.
//
// Session.change runs the steps for one repository under its lock;
// Session.run is steps 2 to 4 of a planned change. The keys come through
// the Keystore interface, which *hsm.Keyring implements (and an in-memory
// fake in the unit tests). TUF lookups live in package roles; the fleet
// work over many repositories is package ceremony/fleet, which this
// package does not import.
package ceremony
