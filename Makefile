# rootkeeper — see README.md.
#
#   make demo   a complete ceremony on throwaway SoftHSM tokens, verified by TUF clients
#   make test   every test on the real path (SoftHSM2, the virtual PIV card via pcscd, go-tuf, tuf-js)

GO        ?= go
BIN       ?= bin/rootkeeper
FUZZTIME  ?= 10s
# Test packages run one binary at a time on CI's two cores; raise for a big machine.
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all build deps demo test test-go fuzz bench vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/rootkeeper

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
	$(GO) test -run '^$$' -fuzz '^FuzzParseURI$$' -fuzztime $(FUZZTIME) ./hsm
	$(GO) test -run '^$$' -fuzz '^FuzzParsePlan$$' -fuzztime $(FUZZTIME) ./ceremony
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 50x ./roles

# Benchmarks (never timed tests): rootkeeper's signer against the raw C_Sign floor.
bench: deps
	sh softhsm-test/bench.sh

clean:
	rm -rf bin
