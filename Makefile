# Vesper: build, test and install.
#
#   make            install missing Debian packages, then build everything
#   make test       the whole suite (TAP, run by prove) and the man-page lint
#   make check-asan the same suite built with AddressSanitizer and UBSan
#   make demo       the small pipeline on the corpus in data/
#   make install PREFIX=/usr/local
#
# The top-level targets first run `make deps`, then call make again, so
# that pkg-config sees what deps has just installed.

B      ?= build
PREFIX ?= /usr/local
DESTDIR ?=

PKGS := libzstd libarchive libutf8proc libcurl jansson openblas libedit \
	libcrypto libxxhash
CC ?= cc
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -Wall -Wextra -fopenmp -MMD -MP -D_DEFAULT_SOURCE \
	-D_FILE_OFFSET_BITS=64
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# --as-needed: each program depends at run time only on the libraries it
# calls (vtrain needs no libarchive), which matters on the GPU machine.
LDFLAGS += -fopenmp -Wl,--as-needed
# OpenBLAS built on OpenMP shares the program's thread pool; Debian's
# default (pthread) build spins threads of its own that fight the OpenMP
# loops for the cores: on 2 cores, tiny training ran 2.4x faster with the
# OpenMP build (6,844 against 2,804 tokens/s).  The run path prefers it
# where libopenblas0-openmp is installed, and falls back to the system's
# libopenblas.so.0 elsewhere.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
ifneq ($(MULTIARCH),)
LDFLAGS += -Wl,-rpath,/usr/lib/$(MULTIARCH)/openblas-openmp
endif
LDLIBS = $(PKG_LIBS) -ldl -lm -lpthread

ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# The CUDA backend is built when nvcc exists (NVCC= turns it off).
NVCC ?= $(shell command -v nvcc 2>/dev/null || \
	{ test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
# Hopper machine code, plus PTX that any later GPU (and sm_80 up) can run.
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 \
	-gencode arch=compute_80,code=compute_80
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra \
	--expt-relaxed-constexpr
CUDA_LIBS ?= -lcublasLt -lcublas

PROGS := vfetch vtokenize vshard vtrain vckpt vquant vgen

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
CLI_OBJ  := $(B)/bin/cli/cli.o
BIN      := $(PROGS:%=$(B)/bin/%)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT     := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%.t)
CU_SRC   := $(wildcard kernels/*.cu)
CU_OBJ   := $(CU_SRC:%.cu=$(B)/%.o)
CUDA_SO  := $(if $(NVCC),$(B)/lib/vesper/libvesper_cuda.so)
MAN      := $(wildcard man/man1/*.1 man/man5/*.5 man/man7/*.7)
CLI_T    := $(wildcard tests/cli/*.t)

.PHONY: all build deps test test-run check-asan install uninstall clean \
	demo test-gpu gpu-inputs bench bench-gpu lint-man fuzz fuzz-build
.DEFAULT_GOAL := all
# Keep objects that chained rules would otherwise delete.
.SECONDARY:

all: deps
	@$(MAKE) --no-print-directory build

build: $(BIN) $(UNIT) $(CUDA_SO)

deps:
	@sh tools/deps.sh

$(B)/lib/libvesper.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(B)/bin/%: $(B)/bin/%.o $(CLI_OBJ) $(B)/lib/libvesper.a
	$(CC) $(LDFLAGS) -o $@ $< $(CLI_OBJ) $(B)/lib/libvesper.a $(LDLIBS)

$(B)/tests/%.t: tests/unit/%.c tests/unit/tap.h $(B)/lib/libvesper.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(B)/lib/libvesper.a $(LDLIBS)

$(B)/kernels/%.o: kernels/%.cu $(wildcard kernels/*.cuh kernels/*.h)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(B)/lib/vesper/libvesper_cuda.so: $(CU_OBJ)
	@mkdir -p $(@D)
	$(NVCC) $(CUDA_ARCH) -shared -o $@ $^ $(CUDA_LIBS)

# The MPI shim of lib/dp.h (data parallel), built when Open MPI's mpicc
# exists (MPICC= turns it off).  vtrain loads it with dlopen only when a
# launcher started several ranks, so no program links libmpi.
MPICC ?= $(shell command -v mpicc 2>/dev/null)
MPI_SO := $(if $(MPICC),$(B)/lib/vesper/libvesper_mpi.so)
build: $(MPI_SO)

$(B)/lib/vesper/libvesper_mpi.so: lib/dp_mpi/dp_mpi.c lib/dp.h lib/verr.h
	@mkdir -p $(@D)
	$(MPICC) -O2 -g -std=c11 -Wall -Wextra -fPIC -shared -o $@ lib/dp_mpi/dp_mpi.c

# The tests find the programs through VESPER_BIN and their data through
# VESPER_SRC; each shell test works in a scratch directory of its own.
TEST_ENV = VESPER_BIN=$(abspath $(B)/bin) VESPER_SRC=$(CURDIR) \
	VESPER_BUILD=$(abspath $(B)) VESPER_MAKEVARS="B=$(abspath $(B)) SAN=$(SAN) NVCC=$(NVCC)"

lint-man:
	@mandoc -T lint -W warning $(MAN) && echo "man pages: mandoc -T lint clean"

test: deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory lint-man
	@$(MAKE) --no-print-directory test-run

# T=... runs a subset: make test-run T='tests/cli/usage.t build/tests/test_vio.t'
T ?= $(UNIT) $(CLI_T)
test-run: build
	$(TEST_ENV) prove -e '' $(PROVEFLAGS) $(addprefix ./,$(T))

check-asan: deps
	@$(MAKE) --no-print-directory B=build-asan SAN=1 NVCC= build
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MAKE) --no-print-directory B=build-asan SAN=1 NVCC= test-run

# On a machine with a GPU (the device machine): the CUDA checks.  The two
# programs are built everywhere (CI has nvcc but no GPU), so that a break
# in the CUDA backend or its tests fails the build there.
GPU_T := $(B)/tests/gpu/test_trainer $(if $(NVCC),$(B)/tests/gpu/test_kernels)
build: $(GPU_T)

$(B)/tests/gpu/test_trainer: tests/gpu/test_trainer.c tests/unit/tap.h \
		$(B)/lib/libvesper.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(B)/lib/libvesper.a $(LDLIBS)

# Kernel objects linked in directly: the test calls each launcher.
$(B)/tests/gpu/test_kernels: tests/gpu/test_kernels.cu $(CU_OBJ) \
		$(B)/lib/libvesper.a
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -Xcompiler -fopenmp -o $@ $< $(CU_OBJ) \
		-Xlinker --as-needed $(B)/lib/libvesper.a $(CUDA_LIBS) $(LDLIBS) -lgomp

test-gpu: build
	$(TEST_ENV) sh tests/gpu/run.sh

# What tests/gpu/e2e.sh trains on: the demo's tokenizer and shards, made
# here because the device machine lacks utf8proc for vtokenize.  Carry
# $(B) to the device machine and run `make test-gpu` there.
gpu-inputs: build
	@$(MAKE) --no-print-directory -f pipelines/small.mk \
		RUN=$(abspath $(B))/gpu-inputs VESPER_BIN=$(abspath $(B))/bin shards
	$(B)/bin/vtokenize export -t $(B)/gpu-inputs/tokenizer.bpe \
		-o $(B)/gpu-inputs/tokenizer.json

# The CUDA trainer against its PyTorch peer (bench/gpu_bench.sh), on the
# device machine.
$(B)/bench/gpu_bench: bench/gpu_bench.c $(B)/lib/libvesper.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(B)/lib/libvesper.a $(LDLIBS)

bench-gpu: build $(B)/bench/gpu_bench
	$(TEST_ENV) sh bench/gpu_bench.sh

# libFuzzer targets, one per parser (tests/fuzz/), built by clang with
# ASan and UBSan: `make fuzz` runs each FUZZ_TIME seconds from the seed
# corpus, keeping what it finds in $(B)/fuzz/.  tests/cli/fuzz.t runs it
# briefly as part of make test, and skips where clang has no libFuzzer.
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_TARGETS := safetensors gguf shard docs tok
# Each target links only the library sources its parser needs.
FUZZ_BASE := lib/verr.c lib/vio.c lib/vjson.c lib/vhash.c
FUZZ_SRC_safetensors := lib/safetensors.c lib/quant.c lib/vlm_config.c
FUZZ_SRC_gguf := lib/gguf.c lib/safetensors.c lib/quant.c lib/vlm_config.c
FUZZ_SRC_shard := lib/shard.c
FUZZ_SRC_docs := lib/fetch_docs.c
FUZZ_SRC_tok := $(wildcard lib/tok*.c)
FUZZ_PKGS := jansson libcrypto libzstd libxxhash libutf8proc
FUZZ_FLAGS = -g -O1 -std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

.SECONDEXPANSION:
$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BASE) $$(FUZZ_SRC_$$*) $(wildcard lib/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(shell pkg-config --cflags $(FUZZ_PKGS)) \
		-o $@ $< $(FUZZ_BASE) $(FUZZ_SRC_$*) \
		$(shell pkg-config --libs $(FUZZ_PKGS)) -lm

fuzz-build: $(FUZZ_TARGETS:%=$(B)/fuzz/fuzz_%)

# The tokenizer target encodes with a tokenizer it is given: the seed
# corpus's own (tests/fuzz/corpus/tok/tokenizer).
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(B)/fuzz/corpus-$$t && \
		FUZZ_TOK=tests/fuzz/corpus/tok/tokenizer \
		$(B)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -rss_limit_mb=1024 \
			-artifact_prefix=$(B)/fuzz/crash-$$t- \
			$(B)/fuzz/corpus-$$t tests/fuzz/corpus/$$t || exit 1; \
	done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(B)/lib/libvesper.a $(DESTDIR)$(PREFIX)/lib/
	$(if $(CUDA_SO),install -d $(DESTDIR)$(PREFIX)/lib/vesper && \
		install -m 755 $(CUDA_SO) $(DESTDIR)$(PREFIX)/lib/vesper/)
	$(if $(MPI_SO),install -d $(DESTDIR)$(PREFIX)/lib/vesper && \
		install -m 755 $(MPI_SO) $(DESTDIR)$(PREFIX)/lib/vesper/)
	install -m 644 $(wildcard man/man1/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 $(wildcard man/man5/*.5) $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 $(wildcard man/man7/*.7) $(DESTDIR)$(PREFIX)/share/man/man7/

uninstall:
	rm -f $(PROGS:%=$(DESTDIR)$(PREFIX)/bin/%) $(DESTDIR)$(PREFIX)/lib/libvesper.a
	rm -rf $(DESTDIR)$(PREFIX)/lib/vesper
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/,$(MAN:man/%=%))

clean:
	rm -rf build build-asan

demo: deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory -f pipelines/small.mk VESPER_BIN=$(abspath $(B)/bin)

-include $(LIB_OBJ:.o=.d) $(BIN:=.d) $(CLI_OBJ:.o=.d) $(UNIT:.t=.d) \
	$(B)/tests/gpu/test_trainer.d
