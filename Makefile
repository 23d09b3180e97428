# lua-uring: build, test and check.  `make test` is what CI and the README run.
LUA        ?= lua5.4
PKG        ?= pkg-config
CC         ?= cc
CFLAGS     ?= -O2 -g
WARN        = -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes \
              -Wstrict-prototypes -Wcast-qual -Wpointer-arith
LUA_INCDIR ?= $(shell $(PKG) --cflags-only-I lua5.4 2>/dev/null | sed 's/-I//')
LIBFLAG    ?= -shared
ALL_CFLAGS  = -std=gnu11 -D_GNU_SOURCE -fPIC $(WARN) -I$(LUA_INCDIR) \
              $(shell $(PKG) --cflags liburing 2>/dev/null) \
              $(shell $(PKG) --cflags openssl 2>/dev/null) $(CFLAGS)
LIBS        = $(shell $(PKG) --libs liburing 2>/dev/null || echo -luring) -lpthread \
              $(shell $(PKG) --libs openssl 2>/dev/null || echo -lssl -lcrypto)
BUILD      ?= build
SRC         = $(wildcard csrc/*.c)
OBJ         = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRC))
SO          = $(BUILD)/uring/core.so
BUSTED     ?= $(LUA) /usr/bin/busted
PREFIX     ?= /usr/local
INST_LIBDIR ?= $(PREFIX)/lib/lua/5.4
INST_LUADIR ?= $(PREFIX)/share/lua/5.4
INST_BINDIR ?= $(PREFIX)/bin
# Debian packages: DEBS are what building and `make demo` need; TEST_DEBS
# the test and bench tools, installed by `make test`, `make bench` and
# `make soak` themselves.  apt's output goes to $(BUILD)/apt.log.
DEBS        = liburing-dev liblua5.4-dev lua5.4 pkg-config gcc make \
              libreadline-dev libssl-dev
TEST_DEBS   = lua-busted curl netcat-openbsd wrk lua-luv lua-cqueues \
              lua-socket python3 fio valgrind lua5.1 nginx-light \
              libnginx-mod-http-lua openssl ca-certificates python3-websockets \
              chromium gnuplot-nox

.PHONY: all test deps deps-test asan asan-build valgrind fuzz oom soak demo bench install clean docs-check tour

RLSO        = $(BUILD)/uring/readline.so

# FAULTS=1 (asan-build sets it): the core's malloc family can be failed on
# request (spec/helpers/faults.c, core._faults) for `make oom`; never in
# the release build
ifeq ($(FAULTS),1)
ALL_CFLAGS += -DUR_FAULTS
OBJ        += $(BUILD)/obj/faults.o
endif

all: $(SO) $(RLSO) $(BUILD)/noring $(BUILD)/testposix.so $(BUILD)/oomhost

# line editing for the REPL: a module of its own, so the core does not
# link GNU readline
$(RLSO): csrc/rl/readline.c
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) $(ALL_CFLAGS) -o $@ $< -lreadline

# a test helper: runs a command with io_uring_setup blocked by seccomp
$(BUILD)/noring: spec/helpers/noring.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

# a test helper: fork, close, a signal handler without SA_RESTART (EINTR),
# for spec/adversarial; loaded with package.loadlib, never installed
$(BUILD)/testposix.so: spec/helpers/testposix.c
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) $(ALL_CFLAGS) -o $@ $<

# a test helper: a lua_State whose allocator fails the Nth allocation, for
# the out-of-memory sweep (spec/oom/run.lua); loads the core built next to it
$(BUILD)/oomhost: spec/helpers/oomhost.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(shell $(PKG) --libs lua5.4 2>/dev/null || echo -llua5.4) -lm -ldl

$(BUILD)/obj/faults.o: spec/helpers/faults.c csrc/uring.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Icsrc -fvisibility=hidden -c -o $@ $<

# the core's objects export only luaopen_uring_core: calls between its own
# files then skip the PLT (-3.5% instructions per uring.nop(), callgrind)
$(BUILD)/obj/%.o: csrc/%.c $(wildcard csrc/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fvisibility=hidden -c -o $@ $<

$(SO): $(OBJ)
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) $(ALL_CFLAGS) -o $@ $(OBJ) $(LIBS)

# Install what is missing from Debian when root; otherwise say what to run.
APT_INSTALL = missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    mkdir -p $(BUILD); echo "apt-get install" $$missing "(log: $(BUILD)/apt.log)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } \
	      >>$(BUILD)/apt.log 2>&1 || { tail -20 $(BUILD)/apt.log; exit 1; }; \
	  else \
	    echo "missing packages; run: sudo apt-get install -y $$missing"; exit 1; \
	  fi; \
	fi
deps:
	@$(call APT_INSTALL,$(DEBS))
deps-test: deps
	@$(call APT_INSTALL,$(TEST_DEBS))

# the suite, the I/O specs under other ring setups, FUZZ_SECONDS of the
# fuzzer under ASan+UBSan and OOM_SAMPLE points of the out-of-memory
# sweep, two at a time (spec/run.lua; URING_TEST_LANES=1: one at a time)
FUZZ_SECONDS ?= 30
OOM_SAMPLE ?= 100
test: deps-test all asan-build
	@URING_MATRIX=1 URING_FUZZ_SECONDS=$(FUZZ_SECONDS) URING_OOM_SAMPLE=$(OOM_SAMPLE) \
	  $(LUA) spec/run.lua "$(BUSTED)"

asan-build:
	@$(MAKE) --no-print-directory BUILD=build-asan FAULTS=1 CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" LIBFLAG="-shared -fsanitize=address,undefined"

asan: asan-build
	@ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  URING_CPATH="build-asan/?.so" $(LUA) spec/run.lua "$(BUSTED)"

# no suppressions file: memcheck is told where the kernel wrote
# (ur_kernel_wrote, csrc/uring.h), and nothing else needs hiding.  It
# builds build-asan too: the fault-hook specs run their children on it.
valgrind: all asan-build
	@URING_VALGRIND=1 $(LUA) spec/run.lua "valgrind -q --child-silent-after-fork=yes --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect $(BUSTED)"

# out of memory at every allocation of a mixed workload, each point in its
# own process under ASan+UBSan (spec/oom/run.lua): make oom [OOM_ARGS=...]
# (--sample K --seed S --jobs J); make test runs OOM_SAMPLE points
OOM_ARGS ?=
oom: all asan-build
	@$(LUA) spec/oom/run.lua $(OOM_ARGS)

# random programs, each in a fresh lua5.4 under ASan+UBSan:
#   make fuzz SECONDS=N [SEED=s]     (a finding prints its seed; exit 1)
SECONDS ?= 60
fuzz: all asan-build
	@$(LUA) spec/fuzz/run.lua --seconds $(SECONDS) --cpath 'build-asan/?.so' $(if $(SEED),--seed $(SEED))

# examples/http_hello.lua and examples/echo_server.lua under wrk and churn
# clients: zero errors, RSS flat after warm-up, fds back to baseline
SOAK_SECONDS ?= 60
soak: deps-test all
	@$(LUA) spec/soak.lua --seconds $(SOAK_SECONDS)

demo: deps all
	$(LUA) examples/batch.lua

# every tour step that measures something, drawn into docs/img/ (gnuplot,
# bin/uring-timeline, and headless Chromium for the inspector): the
# figures docs/tour.md shows; TOUR_FIGURES=name... redraws only those
tour: deps-test all
	@$(LUA) docs/tour_figures.lua $(TOUR_FIGURES)

bench: deps-test all
	$(MAKE) -C bench

# every public function and method has a heading in docs/, and no
# heading names something gone (spec/docs_spec.lua, also part of `make test`)
docs-check: all
	@$(BUSTED) spec/docs_spec.lua

install: all
	install -d $(DESTDIR)$(INST_LIBDIR)/uring $(DESTDIR)$(INST_LUADIR)/uring \
	  $(DESTDIR)$(INST_LUADIR)/uring/http
	install -m 755 $(SO) $(DESTDIR)$(INST_LIBDIR)/uring/core.so
	install -m 644 lua/uring/*.lua $(DESTDIR)$(INST_LUADIR)/uring/
	install -m 644 lua/uring/http/*.lua $(DESTDIR)$(INST_LUADIR)/uring/http/
	install -m 755 $(RLSO) $(DESTDIR)$(INST_LIBDIR)/uring/readline.so
	install -d $(DESTDIR)$(INST_BINDIR)
	install -m 755 bin/uring-repl $(DESTDIR)$(INST_BINDIR)/uring-repl
	install -m 755 bin/uring-timeline $(DESTDIR)$(INST_BINDIR)/uring-timeline

clean:
	rm -rf build build-asan
