# dockd — make targets. The two a newcomer needs: `make run` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
PKGS    := ./...
# Fuzz targets run FUZZTIME each in `make test`: an execution count, not a
# duration. Go 1.26's fuzz coordinator can fail a clean run with "context
# deadline exceeded" when a duration budget expires on a loaded machine
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race. A
# real finding still fails and writes its input to testdata/fuzz. For a long
# run: `make fuzz FUZZTIME=5000000x` (or a duration, accepting that race).
FUZZTIME ?= 50000x

.PHONY: build run test test-deps unit test-arm fuzz bench cross lint soak fleet deb clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dockd ./cmd/dockd

# A demo station on embedded defaults: type scans, see the light and what central receives.
run:
	$(GO) run ./cmd/dockd demo

# gofmt and vet, every test with the race detector, the portable packages'
# tests again on 32- and 64-bit ARM under qemu, then each fuzz target for a
# short bounded time.
test: test-deps lint unit test-arm fuzz

test-deps:
	@scripts/ensure-mosquitto.sh
	@scripts/ensure-postgres.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-qemu.sh

unit:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# The tests of every package that needs neither root nor the daemon's own
# broker, cross-compiled for the boxes dockd ships to (linux/arm GOARM=7 and
# linux/arm64, CGO_ENABLED=0) and run under qemu-user through `go test -exec`,
# so no binfmt_misc registration is needed. Catches what amd64 hides: 64-bit
# atomics misaligned on arm32, int overflow at 32 bits, bbolt's 32-bit mmap,
# endianness and alignment assumptions in the decoders. Tests that re-execute
# their own binary find the emulator in $(TEST_EMU_ENV) (testkit.SelfCommand).
# No -race: the race detector needs cgo and does not exist for linux/arm.
# internal/collector is central's software and its tests drive a broker and a
# PostgreSQL server: it runs natively only (it passed under qemu when tried).
ARM_PKGS     ?= $(shell $(GO) list ./internal/... | grep -v '/internal/collector$$') ./buffer ./device/... ./firmware-config ./uplink/contract
TEST_EMU_ENV := DOCKD_TEST_EMULATOR
test-arm:
	@scripts/ensure-qemu.sh
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(TEST_EMU_ENV)=qemu-arm-static \
	  $(GO) test -exec qemu-arm-static -count=1 -timeout 10m $(ARM_PKGS)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(TEST_EMU_ENV)=qemu-aarch64-static \
	  $(GO) test -exec qemu-aarch64-static -count=1 -timeout 10m $(ARM_PKGS)

# Each Fuzz* function in the tree, FUZZTIME each (corpora are kept in testdata/fuzz).
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for t in $$(grep -h '^func Fuzz' $$f/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$f $$t ($(FUZZTIME))"; \
	    out=$$($(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$f 2>&1) || { echo "$$out"; exit 1; }; \
	  done; \
	done

bench:
	@scripts/ensure-strace.sh || echo "bench: no strace, so the pwrite rows read n/a"
	@scripts/bench.sh

# A fleet of stations (default 200) on one broker: events/s, latency, loss;
# with -delivery receipt / -collector also offered / stored in PostgreSQL /
# lost / duplicates suppressed.
# Central reads through a shared subscription; the restart run uses
# partitioned consumers, since Mosquitto 2.0 forgets $share subscriptions
# across a restart (see uplink/SCALING.md).
fleet: test-deps
	$(GO) run ./cmd/fleet -stations 200 -duration 20s -central shared
	$(GO) run ./cmd/fleet -stations 200 -duration 20s -restart-at 8s -central partitioned
	# Broker kill -9 mid-run, central's collector into a private PostgreSQL:
	# receipt delivery stores every event once; broker delivery (expected to
	# report the loss and exit 1, hence the leading -) for comparison.
	$(GO) run ./cmd/fleet -stations 200 -duration 20s -kill-at 8s -delivery receipt -central partitioned
	-$(GO) run ./cmd/fleet -stations 200 -duration 20s -kill-at 8s -delivery broker -collector -central partitioned -drain 20s

# Long fault soaks, not in `make test`: 1,000 randomised kill -9 points.
soak: test-deps
	DOCKD_KILL_POINTS=1000 $(GO) test -race -count=1 -run '^TestCrashPoints$$' -timeout 90m -v ./cmd/dockd

cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dockd-linux-arm64 ./cmd/dockd
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dockd-linux-armv7 ./cmd/dockd
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dockd-linux-amd64 ./cmd/dockd

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Debian packages for amd64, arm64 and armhf (nfpm as a Go library) into
# $(DEB_OUT): dockd_VERSION_ARCH.deb.
DEB_OUT ?= dist
deb:
	$(GO) run ./cmd/mkdeb -version $(VERSION) -out $(DEB_OUT)

clean:
	rm -rf bin dist
