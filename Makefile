# hearth — the two commands of the quick start are `make run` and `make test`.
# Every target installs the Debian packages it needs first (scripts/deps.sh; quick when present).

BUILD     ?= build
BUILD_TYPE ?= RelWithDebInfo
DATA_DIR  ?= /var/lib/hearth
JOBS      ?= $(shell nproc)
FUZZ_SECONDS ?= 60

PREFIX    ?= /usr/local
DESTDIR   ?=

.PHONY: all deps build run test unit integration e2e bench soak fuzz format clean install uninstall

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

# Leaves build/hearthd and build/hearth.
build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Installs hearth and hearthd into $(DESTDIR)$(PREFIX)/bin (and the README and the API's
# description into share/doc/hearth); builds only those two programs first.
install: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target hearthd hearth
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# Removes what `make install` put there (the same PREFIX and DESTDIR).
uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/hearthd" "$(DESTDIR)$(PREFIX)/bin/hearth"
	rm -rf "$(DESTDIR)$(PREFIX)/share/doc/hearth"

# Prepares the default guest image when missing, then starts hearthd in the foreground with the
# embedded SQLite store in $(DATA_DIR).
run: build
	@test -f $(DATA_DIR)/images/default/manifest.json || \
	  $(BUILD)/hearth image build default --data-dir $(DATA_DIR)
	$(BUILD)/hearthd --data-dir $(DATA_DIR)

# Every test (labels unit, integration, e2e), then every fuzz target for a bounded time:
# FUZZ_SECONDS split across the targets, at least 10 s each (scripts/fuzz.sh).
test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600 -j $(JOBS)
	scripts/fuzz.sh $(FUZZ_SECONDS)

unit integration e2e: build
	cd $(BUILD) && ctest --output-on-failure -L '^$@$$' -j $(JOBS)

# Benchmarks print their numbers; they are not pass/fail tests.
bench: build
	$(BUILD)/bench/api_bench
	$(BUILD)/bench/start_bench
	$(BUILD)/bench/sleep_bench
	$(BUILD)/bench/wake_bench 30
	$(BUILD)/bench/metering_bench
	$(BUILD)/bench/metering_vm_bench

# 10 VMs suspended and resumed in a loop for SOAK_MINUTES; fails on any error or leak.
SOAK_MINUTES ?= 10
soak: build
	$(BUILD)/bench/soak_bench $(SOAK_MINUTES) 10

# Every fuzz target (or FUZZ_TARGETS="qmp_fuzz ..."), FUZZ_SECONDS in all; fails on a finding and
# prints how to replay it.
FUZZ_TARGETS ?=
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) build-fuzz
