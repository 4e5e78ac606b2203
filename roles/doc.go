// Package roles implements TUF 1.0 repository policy for rootkeeper on top
// of go-tuf v2's metadata types.
//
// Keys are seen only as crypto.Signer: NewSigner adapts one to sigstore's
// signature.Signer with the TUF scheme of its key, and Sign signs metadata
// and checks the signature at once. Repo models a repository (New, Load,
// BumpRole, UpdateSnapshot, UpdateTimestamp, Files), Needed tells which
// keys must still sign, and Verify checks a repository directory the way a
// client does, plus what clients disagree on. Overlay lets a writer verify
// the files it is about to write before it writes them.
//
// A typical change: Load, BumpRole (and SetRoleKeys or AddTarget), Sign by
// each officer until Needed is met, UpdateSnapshot and Sign, UpdateTimestamp
// and Sign, then Files, Verify(Overlay(dir, files)), and write the files in
// order.
package roles
