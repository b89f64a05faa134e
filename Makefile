# kcld — Kinesis consumer daemon.  See README.md.
#
#   make            build ./kcld (the -dev packages must be there: make deps)
#   make test       bootstrap, then unit + integration tests, plain and ASan+UBSan
#   make run        bootstrap, build, and run kcld against local emulators
#   make deps       install missing Debian packages and the npm test emulators
#   make bench      the benchmarks (docs/benchmarks.md); BENCH=throughput|latency|scale|failover|filter|fanout
#   make install    PREFIX=/usr/local DESTDIR=
#
# The compiler and linker flags come from pkg-config, which this Makefile
# asks when it is read.  So a target that installs the packages first
# (test, run, chaos, bench) builds in a sub-make, which reads it again after
# `make deps`; a build without them stops at once and names `make deps`.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
SAN     ?=

PKGS    := libuv libcurl libssl libcrypto libnghttp2 jansson yaml-0.1 libdeflate expat
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
CFLAGS  ?= -O2 -g
ifeq ($(SAN),1)
CFLAGS  := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
           -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Isrc -Iinclude -Itests/harness \
              $(PKG_CFLAGS) -MMD -MP
LIBS    := $(PKG_LIBS) -lm -lpthread -ldl

LIB_SRC := $(filter-out src/main.c,$(wildcard src/*.c src/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
HARNESS_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/harness/*.c))
UNIT    := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/unit/test_*.c))
INTEG   := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/integration/test_*.c))

.PHONY: all kcld deps test check unit integration run install clean
all: kcld

kcld: $(BUILD)/kcld
	@if [ "$(BUILD)" = build ]; then cp -f $< $@; fi

# Stops a build whose libraries pkg-config does not know (a fresh machine
# before `make deps`) with that advice, instead of undefined references.
# Order-only, so it never makes anything out of date.
.PHONY: pkg-check
pkg-check:
	@missing=""; \
	for p in $(PKGS); do \
	  pkg-config --exists "$$p" 2>/dev/null || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: pkg-config does not find:$$missing" >&2; \
	  echo "make: run \`make deps\` first (it installs the Debian -dev" \
	    "packages; \`make run\` and \`make test\` do it themselves)" >&2; \
	  exit 1; \
	fi

$(BUILD)/kcld: $(BUILD)/src/main.o $(BUILD)/libkcld.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/libkcld.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c | pkg-check
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(HARNESS_OBJ) $(BUILD)/libkcld.a
	$(CC) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(LIBS)

deps:
	@scripts/bootstrap.sh

# The suites, once in a plain build and once under ASan+UBSan (leaks fail).
test: deps
	@$(MAKE) --no-print-directory check BUILD=build
	@$(MAKE) --no-print-directory check BUILD=build-asan SAN=1

check: $(BUILD)/kcld $(UNIT) $(INTEG)
	@tests/run-tests.sh $(BUILD) $(UNIT) $(INTEG)

unit: $(BUILD)/kcld $(UNIT)
	@tests/run-tests.sh $(BUILD) $(UNIT)

integration: $(BUILD)/kcld $(INTEG)
	@tests/run-tests.sh $(BUILD) $(INTEG)

# The build runs in a sub-make: see the top of this file.
run: deps
	@$(MAKE) --no-print-directory kcld BUILD=$(BUILD)
	@KCLD_BIN=$(BUILD)/kcld KCLD_RUN_DIR=$(BUILD)/run scripts/run-local.sh

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, the systemd unit
# and its kcld@ template (their ExecStart follows BINDIR), the sysusers.d
# and tmpfiles.d entries, the man page, the docs (docs/*.md into DOCDIR)
# and the example configuration, which also becomes
# /etc/kcld/kcld.yaml when that file does not exist yet (never overwritten).
# A real install (no DESTDIR, as root, systemd present) also creates the kcld
# user and the permissions of /etc/kcld; packagers do that at install time.
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/kcld
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CONFDIR     := /etc/kcld
DOCS        := $(wildcard docs/*.md)
UNITS       := kcld.service kcld@.service

.PHONY: uninstall
install: $(BUILD)/kcld
	install -D -m 0755 $(BUILD)/kcld $(DESTDIR)$(BINDIR)/kcld
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do \
	  sed 's|^ExecStart=/usr/local/bin/kcld |ExecStart=$(BINDIR)/kcld |' \
	    systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u.tmp && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp && \
	  mv -f $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -D -m 0644 systemd/kcld.sysusers $(DESTDIR)$(SYSUSERSDIR)/kcld.conf
	install -D -m 0644 systemd/kcld.tmpfiles $(DESTDIR)$(TMPFILESDIR)/kcld.conf
	install -D -m 0644 docs/man/kcld.8 $(DESTDIR)$(MANDIR)/man8/kcld.8
	install -D -m 0644 conf/kcld.yaml $(DESTDIR)$(DOCDIR)/kcld.yaml.example
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	@[ -d $(DESTDIR)$(CONFDIR) ] || install -d -m 0755 $(DESTDIR)$(CONFDIR)
	@if [ -e $(DESTDIR)$(CONFDIR)/kcld.yaml ]; then \
	  echo "install: keeping the existing $(DESTDIR)$(CONFDIR)/kcld.yaml"; \
	else \
	  echo "install -m 0640 conf/kcld.yaml $(DESTDIR)$(CONFDIR)/kcld.yaml"; \
	  install -m 0640 conf/kcld.yaml $(DESTDIR)$(CONFDIR)/kcld.yaml; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && \
	    command -v systemd-sysusers >/dev/null 2>&1; then \
	  echo "systemd-sysusers $(SYSUSERSDIR)/kcld.conf"; \
	  systemd-sysusers $(SYSUSERSDIR)/kcld.conf; \
	  echo "systemd-tmpfiles --create $(TMPFILESDIR)/kcld.conf"; \
	  systemd-tmpfiles --create $(TMPFILESDIR)/kcld.conf; \
	  echo "next: systemctl daemon-reload && systemctl enable --now kcld"; \
	fi

# Removes what install put in place, except the kcld user and an
# /etc/kcld/kcld.yaml that differs from the installed example (local edits).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/kcld $(UNITS:%=$(DESTDIR)$(UNITDIR)/%) \
	  $(DESTDIR)$(SYSUSERSDIR)/kcld.conf $(DESTDIR)$(TMPFILESDIR)/kcld.conf \
	  $(DESTDIR)$(MANDIR)/man8/kcld.8
	@if cmp -s $(DESTDIR)$(DOCDIR)/kcld.yaml.example \
	    $(DESTDIR)$(CONFDIR)/kcld.yaml; then \
	  echo "rm -f $(DESTDIR)$(CONFDIR)/kcld.yaml"; \
	  rm -f $(DESTDIR)$(CONFDIR)/kcld.yaml; \
	elif [ -e $(DESTDIR)$(CONFDIR)/kcld.yaml ]; then \
	  echo "uninstall: keeping the edited $(DESTDIR)$(CONFDIR)/kcld.yaml"; \
	fi
	rm -f $(DESTDIR)$(DOCDIR)/kcld.yaml.example \
	  $(DOCS:docs/%=$(DESTDIR)$(DOCDIR)/%)
	@rmdir $(DESTDIR)$(DOCDIR) $(DESTDIR)$(CONFDIR) 2>/dev/null || true

clean:
	rm -rf build build-asan build-clang build-fuzz kcld

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Keep objects between runs (they are not throw-away intermediates here).
.SECONDARY:

# ======== Fuzzing (tests/fuzz, clang libFuzzer) ========
# make fuzz        each target for FUZZ_SECONDS (60) from its seed corpus
# make fuzz-smoke  each target over its corpus plus a short, fixed mutation
#                  budget; run by make test (tests/integration/
#                  test_fuzz_smoke.c).  See tests/fuzz/run-smoke.sh.
# The parsers' modules are compiled again into $(FUZZ_BUILD) with coverage
# and ASan+UBSan; the normal builds are not touched.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g -fno-omit-frame-pointer \
                $(FUZZ_SAN) -Isrc -Iinclude -Itests/fuzz $(PKG_CFLAGS) -MMD -MP
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/fuzz/%,$(FUZZ_SRC))
# Only the modules the parsers under test need (and what they call), so that
# work in progress elsewhere in src/ does not break the fuzz build.
FUZZ_LIB_SRC := src/err.c src/log.c src/config.c src/config_keys.c \
                src/config_values.c src/config_dump.c src/config_runtime.c \
                src/base/backoff.c src/base/base64.c src/base/buf.c \
                src/base/hex.c src/base/json.c src/base/kpl.c \
                src/base/clock.c src/base/rand.c src/base/seq.c \
                src/base/utf8.c \
                src/consume/record.c src/consume/deagg.c src/consume/budget.c \
                src/consume/getrecords.c src/aws/sigv4.c \
                src/aws/eventstream.c src/aws/s3_uri.c \
                src/handlers/multilang.c src/handlers/lambda.c \
                src/handlers/child.c src/handlers/job.c \
                src/ops/http_server.c src/ops/metrics.c \
                src/process/filter.c src/process/filter_rules.c
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)

.PHONY: fuzz fuzz-build fuzz-smoke
fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) tests/fuzz/run-smoke.sh --long $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) tests/fuzz/run-smoke.sh

$(FUZZ_BUILD)/src/%.o: src/%.c | pkg-check
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/libkcld.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz/%.o: tests/fuzz/%.c | pkg-check
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz/%: $(FUZZ_BUILD)/fuzz/%.o $(FUZZ_BUILD)/libkcld.a
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LIBS)

-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)

# Plugins (include/kcld/handler.h): the plugin-count example, which the
# benchmarks use as the no-op handler, and the test plugins of
# tests/integration/test_plugin.c.
PLUGIN_CFLAGS := -std=c11 $(WARN) -O2 -g -fPIC -shared -Iinclude
TEST_PLUGINS := $(patsubst tests/plugins/%.c,$(BUILD)/tests/plugins/%.so,\
                  $(wildcard tests/plugins/*.c))
examples/plugin-count/plugin-count.so: examples/plugin-count/plugin-count.c \
                                       include/kcld/handler.h
	$(CC) $(PLUGIN_CFLAGS) -o $@ $<
$(BUILD)/tests/plugins/%.so: tests/plugins/%.c include/kcld/handler.h
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -o $@ $<
$(BUILD)/tests/plugins/old_abi.so: tests/plugins/bad_abi.c
$(BUILD)/tests/integration/test_plugin \
$(BUILD)/tests/integration/test_lambda_plugin_e2e: | $(TEST_PLUGINS) \
  examples/plugin-count/plugin-count.so

# The long chaos run (tests/chaos/chaos.c): CHAOS_SECONDS of faults against
# three workers (default 120), CHAOS_SEED replays a printed schedule;
# CHAOS_FANOUT=1: one worker reads with fetch.mode: fanout.
CHAOS_SECONDS ?= 120
.PHONY: chaos chaos-build
chaos: deps
	@$(MAKE) --no-print-directory chaos-build BUILD=$(BUILD)
	@CHAOS_SECONDS=$(CHAOS_SECONDS) \
	  KCLD_TEST_TIMEOUT=$$(( $(CHAOS_SECONDS) + 240 )) \
	  tests/run-tests.sh $(BUILD) $(BUILD)/tests/chaos/test_chaos
	@grep -h '^chaos: seed\|^measured:' $(BUILD)/tests/chaos/test_chaos.log
chaos-build: $(BUILD)/kcld $(BUILD)/tests/chaos/test_chaos

# Benchmarks (bench/, docs/benchmarks.md): throughput against a fixture
# endpoint next to the C floor, the Node SDK peer and the boto3 peer; latency,
# scale and failover; each figure is printed with its ratio against issue 11's
# targets (PASS/MISS); it never fails on slowness.  `make bench BENCH=latency`
# runs one.  `bench-deps` adds what only the benchmarks need (python3-boto3;
# `make deps` and `make test` do not install it) and the peer's npm packages
# in bench/node.  Every process a benchmark starts goes through
# $(BUILD)/bench/launch (dies with its parent), the driver included, so a
# killed `make bench` leaves nothing running; `make bench-selftest` checks it.
BENCH ?=
BENCH_BIN := $(BUILD)/bench/floor $(BUILD)/bench/floor-jansson $(BUILD)/bench/launch
$(BUILD)/bench/floor: bench/floor.c | pkg-check
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -g -o $@ $< -lcurl -lcrypto
$(BUILD)/bench/floor-jansson: bench/floor_jansson.c | pkg-check
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -g -o $@ $< -ljansson -lcrypto
$(BUILD)/bench/launch: bench/launch.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -g -o $@ $<
bench-deps:
	@scripts/bootstrap.sh --bench
	@cd bench/node && if ! cmp -s package-lock.json node_modules/.kcld-lock 2>/dev/null; then \
	  npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.kcld-lock; fi
# The build runs in a sub-make, after bench-deps: see the top of this file.
bench-build: $(BUILD)/kcld examples/plugin-count/plugin-count.so $(BENCH_BIN)
bench: bench-deps
	@$(MAKE) --no-print-directory bench-build BUILD=$(BUILD)
	@NODE_NO_WARNINGS=1 KCLD_BIN=$${KCLD_BIN:-$(BUILD)/kcld} KCLD_BENCH_BIN=$(BUILD)/bench \
	  BENCH_OUT=$${BENCH_OUT:-$(BUILD)/bench/results.json} \
	  exec $(BUILD)/bench/launch -p $$PPID node bench/node/run.mjs $(BENCH)
bench-selftest: bench-deps
	@$(MAKE) --no-print-directory bench-build BUILD=$(BUILD)
	@bench/selftest.sh $(BUILD)
.PHONY: bench bench-build bench-deps bench-selftest
