// Package runbooks runs rootkeeper's runbooks (docs/runbook-*.md) as an
// officer would type them, so that a runbook that no longer works with the
// tool fails CI.
//
// TestRunbooks finds every runbook by glob, parses it ([Parse]) into steps —
// ```sh blocks run as scripts, "$ " lines of ```console blocks run as
// commands whose following lines are an excerpt of their output, file=PATH
// blocks written to files, <!-- rehearsal … --> comments set up for the test
// only — and runs the steps in order, each on a pseudo-terminal of its own
// ([Terminal]), with the PINs and answers an officer would type
// ([Responder]). Excerpts are checked loosely, with key ids and serials
// bound to what the run printed ([Bindings]).
//
// The conventions, for the people who write runbooks, are in
// docs/testing.md#runbooks-that-run.
//
// This package is test infrastructure: nothing imports it.
package runbooks
