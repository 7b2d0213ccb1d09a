# crest build. `make` builds libcrest (static and shared), the crest binary and crest.pc into
# build/. `make run` starts the demo app, `make test` runs every test (see README.md).
# Options: CC=clang, DEBUG=1 (an application's misuse asserts), SAN=1 (AddressSanitizer +
# UndefinedBehaviorSanitizer, into build-san/), TSAN=1 (ThreadSanitizer, into build-tsan/),
# BUILD=dir, PREFIX=/usr/local for install.
# `make man` renders doc/*.scd with scdoc into $(BUILD)/man/ (part of `all` when scdoc is there).
# `make install` puts the systemd units (dist/systemd/) into SYSTEMDUNITDIR, by default
# $(PREFIX)/lib/systemd/system for PREFIX /usr or /usr/local (the two prefixes whose unit folder
# systemd reads) and nowhere for any other PREFIX unless SYSTEMDUNITDIR is given.

VERSION := 0.1.0
PREFIX ?= /usr/local
ifneq ($(filter /usr /usr/local,$(PREFIX)),)
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
endif
SCDOC := $(shell command -v scdoc 2>/dev/null)
CC ?= cc
ifeq ($(origin CC),default)
CC := cc
endif

ifeq ($(SAN),1)
BUILD ?= build-san
MODE_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
MODE_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(TSAN),1)
BUILD ?= build-tsan
MODE_CFLAGS := -O1 -g -fsanitize=thread
MODE_LDFLAGS := -fsanitize=thread
else
BUILD ?= build
MODE_CFLAGS := -O2 -g
MODE_LDFLAGS :=
endif
# DEBUG=1: assertions that catch an application's misuse (a second finishing call, a request
# never finished) abort instead of being reported (defines CREST_DEBUG).
ifeq ($(DEBUG),1)
MODE_CFLAGS += -DCREST_DEBUG
endif

UV_CFLAGS := $(shell pkg-config --cflags libuv 2>/dev/null)
UV_LIBS := $(shell pkg-config --libs libuv 2>/dev/null || echo -luv)
# Libraries besides libuv (Debian -dev packages; scripts/deps.sh installs them).
# libpq's headers only: it is loaded with dlopen when a PostgreSQL database is opened
# (src/db/pq.h says why). msgpack is libmsgpackc (src/codec/sioad.c: the Socket.IO Redis adapter).
DEP_PKGS := sqlite3 libssl libcrypto zlib libcjson libnghttp2 msgpack
DEP_CFLAGS := $(shell pkg-config --cflags $(DEP_PKGS) libpq 2>/dev/null)
DEP_LIBS := $(shell pkg-config --libs $(DEP_PKGS) 2>/dev/null) -ldl
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(WARN) $(MODE_CFLAGS) -fPIC -fvisibility=hidden \
	-Iinclude -Isrc $(UV_CFLAGS) $(DEP_CFLAGS) -DCREST_VERSION_STRING='"$(VERSION)"' $(CFLAGS)
LDLIBS_ALL := $(UV_LIBS) $(DEP_LIBS) -lm -lpthread $(LDLIBS)
# The crest binary links libuv statically where Debian ships the archive: only the code it runs is
# paged in, which keeps an idle server's resident memory small (BENCH.md measures it).
UV_STATIC := $(wildcard $(shell pkg-config --variable=libdir libuv 2>/dev/null)/libuv_a.a)
BIN_LDLIBS := $(if $(UV_STATIC),$(UV_STATIC) -ldl -lrt,$(UV_LIBS)) $(DEP_LIBS) -lm -lpthread $(LDLIBS)

LIB_SRC := $(sort $(wildcard src/*/*.c))
APP_SRC := $(sort $(wildcard app/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
APP_OBJ := $(APP_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(sort $(wildcard examples/*.c)))
ITAPP := $(BUILD)/tests/it_app
MAN_PAGES := $(BUILD)/man/crest.1 $(BUILD)/man/crest.3

.PHONY: all run test unit install uninstall clean format format-check fuzz deps man showdown
all: $(BUILD)/libcrest.a $(BUILD)/libcrest.so $(BUILD)/crest $(BUILD)/crest.pc $(EXAMPLES) \
	$(if $(SCDOC),$(MAN_PAGES))

man: $(MAN_PAGES)
$(BUILD)/man/%: doc/%.scd
	@mkdir -p $(dir $@)
	scdoc < $< > $@

deps:
	@scripts/deps.sh build

# sio-bundle.sh puts socket.io-client's browser bundle where app/public/sio.html loads it; without
# it the demo still runs and that page says what is missing.
run: deps
	@$(MAKE) --no-print-directory all
	@scripts/sio-bundle.sh || echo "run: no socket.io-client bundle; /sio.html will say so" >&2
	$(BUILD)/crest demo $(ARGS)

test:
	@scripts/deps.sh test
	@tests/run.sh

# crest beside Node.js, Python and Java on every workload (bench/showdown/run.py: about 40
# minutes; QUICK=1 about 6). It installs what the peers need itself.
showdown: deps
	@$(MAKE) --no-print-directory all
	/usr/bin/python3 bench/showdown/run.py $(if $(QUICK),--quick) $(SHOWDOWN_ARGS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libcrest.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libcrest.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libcrest.so.0 $(MODE_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/crest: $(APP_OBJ) $(BUILD)/libcrest.a
	$(CC) $(MODE_LDFLAGS) $(LDFLAGS) -o $@ $(APP_OBJ) $(BUILD)/libcrest.a $(BIN_LDLIBS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libcrest.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(MODE_LDFLAGS) -o $@ $< $(BUILD)/libcrest.a $(LDLIBS_ALL)

# pkg-config file for PREFIX; `make install` writes it again for its own PREFIX. --cflags gives
# crest's include folder alone (the public headers include only libc's). What a static link of
# libcrest.a adds is in Libs.private, resolved here, not in Requires.private: pkg-config would
# pass a required package's Cflags to every user's --cflags (cJSON's -I/usr/include/cjson).
# Duplicates are dropped keeping the last, which keeps each library after those needing it.
PC_LIBS_PRIVATE := $(shell { pkg-config --static --libs libuv $(DEP_PKGS) 2>/dev/null; \
	echo -ldl -lpthread; } | tr ' ' '\n' | tac | awk 'NF && !seen[$$0]++' | tac | tr '\n' ' ')
write_pc = printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: crest\nDescription: HTTP/1.1 and HTTP/2 server runtime and framework on libuv\nVersion: %s\nLibs: -L$${libdir} -lcrest\nLibs.private: %s\nCflags: -I$${includedir}\n' '$(1)' '$(VERSION)' '$(strip $(PC_LIBS_PRIVATE))' > $(2)
$(BUILD)/crest.pc: Makefile
	@mkdir -p $(dir $@)
	$(call write_pc,$(PREFIX),$@)

# Unit tests link the static library, whose internal (hidden) symbols stay linkable.
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libcrest.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP $(MODE_LDFLAGS) -o $@ $< $(BUILD)/libcrest.a $(LDLIBS_ALL) -lcmocka

# The integration-test app: the public API's corners the demo does not reach (async answers,
# middleware, streaming).
$(ITAPP): tests/it/it_app.c $(BUILD)/obj/app/cli.o $(BUILD)/libcrest.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(MODE_LDFLAGS) -o $@ $< $(BUILD)/obj/app/cli.o $(BUILD)/libcrest.a $(BIN_LDLIBS)

# More test apps (tests/it/<name>_app.c), each for the corners of one feature; same flags.
IT_APPS := $(filter-out $(ITAPP),$(patsubst tests/it/%.c,$(BUILD)/tests/%,$(wildcard tests/it/*_app.c)))
$(BUILD)/tests/%_app: tests/it/%_app.c $(BUILD)/obj/app/cli.o $(BUILD)/libcrest.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(MODE_LDFLAGS) -o $@ $< $(BUILD)/obj/app/cli.o $(BUILD)/libcrest.a $(BIN_LDLIBS)

unit: $(UNIT_BIN) $(ITAPP) $(IT_APPS)

# libFuzzer targets: fuzz/<name>/fuzz_<name>.c with a seed corpus in fuzz/<name>/corpus/, built
# with clang into build-fuzz/: the library is compiled once, instrumented, into an archive every
# driver links (compiling it into each driver took minutes as the targets grew).
FUZZ_NAMES := $(notdir $(patsubst %/,%,$(sort $(wildcard fuzz/*/))))
FUZZ_BIN := $(FUZZ_NAMES:%=build-fuzz/fuzz_%)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc $(UV_CFLAGS) $(DEP_CFLAGS) \
	-DCREST_VERSION_STRING='"$(VERSION)"'
FUZZ_OBJ := $(LIB_SRC:%.c=build-fuzz/obj/%.o)
fuzz: $(FUZZ_BIN)
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c $< -o $@
build-fuzz/libcrest-fuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
define fuzz_rule
build-fuzz/fuzz_$(1): fuzz/$(1)/fuzz_$(1).c build-fuzz/libcrest-fuzz.a
	clang $$(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $$@ $$< \
		build-fuzz/libcrest-fuzz.a $$(LDLIBS_ALL)
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call fuzz_rule,$(n))))

install: all man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/crest
	install -m 755 $(BUILD)/crest $(DESTDIR)$(PREFIX)/bin/crest
	install -m 644 $(BUILD)/libcrest.a $(DESTDIR)$(PREFIX)/lib/libcrest.a
	install -m 755 $(BUILD)/libcrest.so $(DESTDIR)$(PREFIX)/lib/libcrest.so.$(VERSION)
	ln -sf libcrest.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libcrest.so.0
	ln -sf libcrest.so.0 $(DESTDIR)$(PREFIX)/lib/libcrest.so
	install -m 644 include/crest.h $(DESTDIR)$(PREFIX)/include/crest.h
	install -m 644 include/crest/*.h include/crest/*.def $(DESTDIR)$(PREFIX)/include/crest/
	$(call write_pc,$(PREFIX),$(DESTDIR)$(PREFIX)/lib/pkgconfig/crest.pc)
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3
	install -m 644 $(BUILD)/man/crest.1 $(DESTDIR)$(PREFIX)/share/man/man1/crest.1
	install -m 644 $(BUILD)/man/crest.3 $(DESTDIR)$(PREFIX)/share/man/man3/crest.3
ifneq ($(SYSTEMDUNITDIR),)
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|/usr/local/bin/crest|$(PREFIX)/bin/crest|' dist/systemd/crest.service \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/crest.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/crest.service
	install -m 644 dist/systemd/crest.socket $(DESTDIR)$(SYSTEMDUNITDIR)/crest.socket
endif

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/bin/crest $(DESTDIR)$(PREFIX)/lib/libcrest.* \
		$(DESTDIR)$(PREFIX)/include/crest.h $(DESTDIR)$(PREFIX)/include/crest \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig/crest.pc \
		$(DESTDIR)$(PREFIX)/share/man/man1/crest.1 $(DESTDIR)$(PREFIX)/share/man/man3/crest.3
ifneq ($(SYSTEMDUNITDIR),)
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/crest.service $(DESTDIR)$(SYSTEMDUNITDIR)/crest.socket
endif

FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build build-san build-tsan build-clang build-fuzz

-include $(LIB_OBJ:.o=.d) $(APP_OBJ:.o=.d) $(UNIT_BIN:=.d) $(FUZZ_OBJ:.o=.d)
