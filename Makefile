# rootkeeper — see README.md.
#
#   make demo     a complete ceremony on throwaway SoftHSM tokens, verified by TUF clients
#   make test     every test on the real path (SoftHSM2, the virtual PIV card via pcscd, go-tuf, tuf-js)
#   make man      a man page per command, made from the commands, into man/
#   make install  the binary and the man pages under $(DESTDIR)$(PREFIX) (default /usr/local)

GO        ?= go
BIN       ?= bin/rootkeeper
# Fuzz budgets are counts of executions, about 10 s each on a 2-core machine: a duration
# (-fuzztime 10s) races Go's fuzz coordinator at its deadline and fails now and then with a
# bare "context deadline exceeded" and no crasher (go.dev/issue/75804, fixed in Go 1.27).
FUZZ_URI  ?= 500000x
FUZZ_PLAN ?= 35000x
FUZZ_LOAD ?= 25000x
# Test packages run one binary at a time on CI's two cores; raise for a big machine.
TESTFLAGS ?= -count=1 -timeout 20m
PREFIX    ?= /usr/local
DESTDIR   ?=
MANDIR    ?= man
# The man pages' date: the last commit's, so that they are reproducible.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
export SOURCE_DATE_EPOCH

.PHONY: all build deps demo test test-go fuzz bench vet clean man install

all: build

build:
	$(GO) build -o $(BIN) ./cmd/rootkeeper

# man writes rootkeeper.1 and rootkeeper-COMMAND.1 for every command
# (cmd/rootkeeper/man.go), generated anew each time, never committed.
man: build
	rm -rf $(MANDIR)
	$(BIN) __man $(MANDIR)

install: build man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/rootkeeper
	install -m 0644 $(MANDIR)/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

# deps installs what the tests and the demo need: apt-get when root,
# otherwise it prints the exact command.
deps:
	@sh softhsm-test/install-deps.sh

demo: deps
	@sh softhsm-test/demo.sh

vet:
	$(GO) vet ./...

test: deps vet test-go fuzz

test-go:
	sh softhsm-test/pcscd.sh start
	$(GO) test $(TESTFLAGS) ./...

# Each fuzz target runs a short while from its committed seed corpus.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseURI$$' -fuzztime $(FUZZ_URI) ./hsm
	$(GO) test -run '^$$' -fuzz '^FuzzParsePlan$$' -fuzztime $(FUZZ_PLAN) ./ceremony
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZ_LOAD) -fuzzminimizetime 50x ./roles

# Benchmarks (never timed tests): rootkeeper's signer against the raw C_Sign floor.
bench: deps
	sh softhsm-test/bench.sh

clean:
	rm -rf bin $(MANDIR)
