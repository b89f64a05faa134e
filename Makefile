# kcld — Kinesis consumer daemon.  See README.md.
#
#   make            build ./kcld
#   make test       bootstrap, then unit + integration tests, plain and ASan+UBSan
#   make run        bootstrap, build, and run kcld against local emulators
#   make deps       install missing Debian packages and the npm test emulators
#   make install    PREFIX=/usr/local DESTDIR=

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
SAN     ?=

PKGS    := libuv libcurl libcrypto jansson yaml-0.1
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

.PHONY: all deps test check unit integration run install clean
all: kcld

kcld: $(BUILD)/kcld
	@if [ "$(BUILD)" = build ]; then cp -f $< $@; fi

$(BUILD)/kcld: $(BUILD)/src/main.o $(BUILD)/libkcld.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/libkcld.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
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

run: deps kcld
	@scripts/run-local.sh

install: kcld
	install -D -m 0755 kcld $(DESTDIR)$(PREFIX)/bin/kcld
	install -D -m 0644 conf/kcld.yaml $(DESTDIR)/etc/kcld/kcld.yaml

clean:
	rm -rf build build-asan kcld

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Keep objects between runs (they are not throw-away intermediates here).
.SECONDARY:
