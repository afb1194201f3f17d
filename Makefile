# ngx-musicgen: engine library, tools, tests and benchmarks.
#   make            library + tools (build/)
#   make test       unit tests + golden checks   (SAN=1: ASan/UBSan build)
#   make check      make test, test-nginx, test-browser, test-deb, then make test SAN=1 (what CI runs)
#   make deb        the Debian package libnginx-mod-http-musicgen (build/deb/)
#   make bench      speed/memory figures on a musicgen-small-shaped random model
#   make bench-sizes the same for the medium and large shapes (q8, bf16)
#   make demo       tiny random model + one clip from the CLI (demo.wav)
#   make model      download facebook/musicgen-small into models/musicgen-small
#                   (MODEL=owner/name: any checkpoint, single-file or sharded)
#   make bench-gpu  the same model on the CUDA backend (needs a GPU)
#   make fuzz       every libFuzzer target in fuzz/ for FUZZ_SECONDS each (clang)
#   make valgrind   memcheck of the CLI on the tiny demo model (no leaks, no errors)
#   make soak       wrk load against the module: statuses, latency, worker RSS
#
# The CUDA backend (kernels/*.cu) is built whenever nvcc is found (PATH or
# /usr/local/cuda/bin); CUDA=0 forces a CPU-only build. cudart is linked
# statically, so binaries and the nginx module need only the driver.
#
# The build prints one line per step ("CC src/io/audio.c"); V=1 prints the
# full command lines, and the nginx module build's own output.

CC      ?= cc
GOLDEN  ?= ../shared/golden
# golden sets of features being built, checked one folder at a time
GOLDEN_NEXT_SETS ?= ../shared/golden-next/tiny-proj-cont ../shared/golden-next/tiny-proj-sharded ../shared/golden-next/tiny-stereo
BUILD   ?= build
SAN     ?= 0

# -ffp-contract=off: no fused multiply-adds the source does not spell (gcc's
# default in ISO C mode, spelled out for clang): sums must not depend on
# which kernel level or compiler ran them
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -ffp-contract=off -g -pthread -Isrc
ifeq ($(SAN),1)
  BUILD  := build-san
  CFLAGS ?= -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN   = -fsanitize=address,undefined
else
  CFLAGS ?= -O2
endif
ALL_CFLAGS = $(CFLAGS_BASE) $(CFLAGS)

# Quiet build: $(Q) hides a command, $(say) WHAT FILE prints its one line instead.
V ?= 0
ifeq ($(V),1)
  Q   :=
  say := @true
else
  Q   := @
  say := @printf '  %-6s %s\n'
endif
LDLIBS  = -ljansson -lsndfile -lFLAC -lmp3lame -lopus -logg -lsoxr -lm -pthread $(LDSAN)

NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA ?= $(if $(NVCC),1,0)
ifeq ($(CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but no nvcc found (set NVCC=/path/to/nvcc))
  endif
  CUDA_HOME ?= $(abspath $(dir $(NVCC))/..)
  CUDA_LIBDIR ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib $(CUDA_HOME)/targets/x86_64-linux/lib))
  # A fat binary: machine code for Ampere, Ada and Hopper, plus PTX for later GPUs.
  CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 \
               -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=[sm_90,compute_90]
  # Device code is never built with sanitizers (ASan cannot instrument it).
  NVCCFLAGS ?= -O3
  ALL_NVCCFLAGS = -std=c++17 -g -Isrc $(CUDA_ARCH) $(NVCCFLAGS) -Werror all-warnings \
                  -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter,-fPIC
  ALL_CFLAGS += -DMG_HAVE_CUDA
  LDLIBS += -L$(CUDA_LIBDIR) -lcudart_static -ldl -lrt -lstdc++
  CU_OBJ = $(patsubst %.cu,$(BUILD)/%.o,$(wildcard kernels/*.cu))
  KTEST  = $(BUILD)/mg-kernel-test
endif

# an executable from its objects and the libraries
define LINK
$(say) LD $@
$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)
endef

# the engine: every folder of src/ but nginx/ (the module's own files, built by nginx)
LIB_SRC  = $(filter-out src/nginx/%,$(wildcard src/*/*.c))
LIB_HDR  = $(filter-out src/nginx/%,$(wildcard src/*/*.h))
MODULE_SRC = ngx_http_musicgen_module.c $(wildcard src/nginx/*.c src/nginx/*.h)
MODULE   = $(BUILD)/nginx/objs/ngx_http_musicgen_module.so
DEMO_MODEL ?= build/demo-model
# a second model beside it in one nginx (t/010-models.t)
DEMO_MODEL2 ?= build/demo-model-short
STEREO_MODEL ?= build/demo-model-stereo
SERVE    = $(CURDIR)/$(BUILD)/serve
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_OBJ)
LIB      = $(BUILD)/libmusicgen.a
# code only the tools and tests use (the tokenizer-model writer, the backend
# options read from the environment)
TOOL_LIB = $(BUILD)/libmgtools.a
TOOLS    = $(BUILD)/musicgen $(BUILD)/musicgen-mkmodel $(BUILD)/mg-golden $(KTEST)
TEST_SRC = $(wildcard tests/test_*.c)
TESTS    = $(TEST_SRC:tests/%.c=$(BUILD)/%)
# fuzz targets replayed over their corpora by the test build (tests/test_fuzz_replay.sh)
REPLAYS  = $(patsubst fuzz/fuzz_%.c,$(BUILD)/replay_%,$(wildcard fuzz/fuzz_*.c))
BENCH_SRC= $(wildcard bench/*.c)
BENCHES  = $(BENCH_SRC:bench/%.c=$(BUILD)/%)

.PHONY: all test test-nginx test-browser test-deb check bench bench-stream bench-sizes bench-gpu model demo module serve stop clean fuzz fuzz-build valgrind soak deb cuda-objects module-cuda-env
all: $(LIB) $(TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/kernels/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(NVCC_NOTE)
	$(say) NVCC $<
	$(Q)$(NVCC) $(ALL_NVCCFLAGS) -MMD -MP -c $< -o $@
# Without a GPU (no nvidia-smi or no /dev/nvidia0) the CUDA backend is still
# built wherever nvcc is (CI compiles it so), but that minute should not be
# a surprise: one line says so before the first kernel of a make run (a
# directory named after this make's process id marks it printed; mkdir is
# atomic, so parallel kernel builds print it once; $(LIB) removes it).
HAVE_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && [ -e /dev/nvidia0 ] && echo 1)
NVCC_NOTE_DIR = $(BUILD)/kernels/.nvcc-note-$(MAKE_PID)
MAKE_PID := $(shell echo $$PPID)
NVCC_NOTE = $(if $(HAVE_GPU),,@if mkdir $(NVCC_NOTE_DIR) 2>/dev/null; then \
    echo "building the CUDA backend with nvcc (~1 min); CUDA=0 skips it"; fi)
# Switching CUDA on or off rebuilds what depends on MG_HAVE_CUDA.
$(BUILD)/cuda-$(CUDA).stamp:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/cuda-*.stamp && touch $@
$(BUILD)/src/runtime/model.o $(BUILD)/bench/bench_gpu.o: $(BUILD)/cuda-$(CUDA).stamp
$(BUILD)/mg-kernel-test: $(BUILD)/kernels/kernel_test.o $(TOOL_LIB) $(LIB)
	$(LINK)

$(LIB): $(LIB_OBJ)
	@rm -rf $(BUILD)/kernels/.nvcc-note-*
	$(say) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^
$(TOOL_LIB): $(BUILD)/tools/spm_write.o $(BUILD)/tools/backend_env.o
	$(say) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/musicgen: $(BUILD)/tools/musicgen.o $(TOOL_LIB) $(LIB)
	$(LINK)
$(BUILD)/musicgen-mkmodel: $(BUILD)/tools/mkmodel.o $(TOOL_LIB) $(LIB)
	$(LINK)
GOLDEN_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/golden*.c))
$(BUILD)/mg-golden: $(GOLDEN_OBJ) $(TOOL_LIB) $(LIB)
	$(LINK)
$(BUILD)/test_%: $(BUILD)/tests/test_%.o $(TOOL_LIB) $(LIB)
	$(LINK)
$(BUILD)/replay_%: $(BUILD)/fuzz/fuzz_%.o $(BUILD)/fuzz/replay.o $(TOOL_LIB) $(LIB)
	$(LINK)
# LD_PRELOAD allocation-failure injection for the nginx fault tests (never in the module).
$(BUILD)/libmgfault.so: tests/fault_malloc.c
	$(say) CC $@
	$(Q)$(CC) -std=c11 -Wall -Wextra -Werror -O2 -shared -fPIC $< -o $@
# The engine's allocations (calls from libmusicgen.a) go through the test's fault hook.
FAULT_WRAP = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign,--wrap=strdup,--wrap=strndup
$(BUILD)/test_fault_alloc: $(BUILD)/tests/test_fault_alloc.o $(TOOL_LIB) $(LIB)
	$(LINK) $(FAULT_WRAP)
$(BUILD)/bench_%: $(BUILD)/bench/bench_%.o $(TOOL_LIB) $(LIB)
	$(LINK)

# Every test binary and every golden set; the last line is the overall tally.
# With SAN=1 the nginx module's tests follow, on the sanitized module.
test: all $(TESTS) $(REPLAYS)
	@GOLDEN=$(GOLDEN) GOLDEN_NEXT_SETS="$(GOLDEN_NEXT_SETS)" BUILD=$(BUILD) sh tests/run.sh $(TESTS) $(KTEST) $(wildcard tests/test_*.sh)
	@if [ "$(SAN)" = 1 ]; then $(MAKE) --no-print-directory test-nginx SAN=1; fi

# Everything CI runs: the engine tests, the nginx module's tests, the web
# page in a browser, the Debian package installed and purged, then the
# engine and module tests again under ASan/UBSan.
check:
	$(MAKE) test
	$(MAKE) test-nginx
	$(MAKE) test-browser
	$(MAKE) test-deb
	$(MAKE) test SAN=1

# The module in the stock nginx binary: nginx -t checks, then the
# Test::Nginx suites in t/ (with our own runner, t/lib, when openresty's
# Test::Nginx is not installed).
#
# SAN=1: the module is built with ASan+UBSan and the stock nginx binary runs
# it with the sanitizer runtimes preloaded (tests/san-nginx.sh, which every
# script and the runner use as TEST_NGINX_BINARY). Reports go to files under
# $(SAN_LOGS) instead of the error log; any file there fails the run. Leak
# checking stays on: nginx frees what it allocates or keeps it reachable, and
# tests/lsan.supp names the few nginx allocations that are not (none of ours).
SAN_LOGS = $(CURDIR)/$(BUILD)/san-logs
ifeq ($(SAN),1)
  NGX_TEST_ENV = TEST_NGINX_BINARY=$(CURDIR)/tests/san-nginx.sh \
      MG_SAN_PRELOAD="$(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)" \
      ASAN_OPTIONS=log_path=$(SAN_LOGS)/asan:detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0 \
      LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
      UBSAN_OPTIONS=log_path=$(SAN_LOGS)/ubsan:print_stacktrace=1:halt_on_error=1
endif
test-nginx: $(MODULE) $(DEMO_MODEL)/model.safetensors $(DEMO_MODEL2)/model.safetensors $(STEREO_MODEL)/model.safetensors $(SERVE)/nginx.conf $(BUILD)/libmgfault.so
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS) && chmod 1777 $(SAN_LOGS)  # workers may run as nobody
	$(NGX_TEST_ENV) sh tests/nginx_conf.sh $(MODULE) $(DEMO_MODEL) $(SERVE)/nginx.conf
	$(NGX_TEST_ENV) sh tests/nginx_load.sh $(MODULE) $(DEMO_MODEL)
	$(NGX_TEST_ENV) sh tests/nginx_faults.sh $(MODULE) $(DEMO_MODEL) $(BUILD)/musicgen-mkmodel $(BUILD)/libmgfault.so
	$(NGX_TEST_ENV) sh tests/nginx_edge.sh $(MODULE) $(DEMO_MODEL)
	$(NGX_TEST_ENV) python3 tests/nginx_openapi.py $(MODULE) $(DEMO_MODEL)
	$(NGX_TEST_ENV) sh tests/nginx_metrics.sh $(MODULE) $(DEMO_MODEL)
	@if perl -MTest::Nginx::Socket -e1 2>/dev/null; then lib=; \
	elif [ -f t/lib/Test/Nginx/Socket.pm ]; then lib=t/lib; \
	else echo "SKIP t/: no Test::Nginx::Socket (neither installed nor in t/lib)"; exit 0; fi; \
	$(NGX_TEST_ENV) TEST_NGINX_LOAD_MODULES=$(CURDIR)/$(MODULE) TEST_NGINX_MUSICGEN_MODEL=$(CURDIR)/$(DEMO_MODEL) \
	    TEST_NGINX_MUSICGEN_MODEL2=$(CURDIR)/$(DEMO_MODEL2) TEST_NGINX_MUSICGEN_STEREO_MODEL=$(CURDIR)/$(STEREO_MODEL) \
	    PERL5LIB=$$lib$${PERL5LIB:+:$$PERL5LIB} prove -r t
	@if [ -n "$$(ls $(SAN_LOGS))" ]; then echo "FAIL sanitizer reports in $(SAN_LOGS):"; \
	    head -n 60 $(SAN_LOGS)/*; exit 1; fi

# valgrind memcheck of the CLI on the tiny demo model: one clip per output
# format; any invalid access or leak (definite, indirect, possible) fails.
VALGRIND = valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible \
           --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99
valgrind: $(BUILD)/musicgen $(DEMO_MODEL)/model.safetensors
	@for f in wav flac ogg mp3; do \
	    echo "valgrind: musicgen -d 2 -f $$f"; \
	    $(VALGRIND) $(BUILD)/musicgen -m $(DEMO_MODEL) -p "calm piano with soft drums" -d 2 -s 7 -j 2 \
	        --device cpu -q -f $$f -o $(BUILD)/valgrind.$$f || exit 1; \
	done; echo "valgrind: no errors, no leaks"

# wrk against the module for SOAK_SECONDS (tests/soak.sh): statuses, latency,
# worker RSS at start and end; figures also in $(BUILD)/soak.txt.
SOAK_SECONDS ?= 60
soak: $(MODULE) $(DEMO_MODEL)/model.safetensors
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_OUT=$(BUILD)/soak.txt $(NGX_TEST_ENV) sh tests/soak.sh $(MODULE) $(DEMO_MODEL)

# The photo-to-music page (html/) in headless Chromium driven by
# playwright-core, against nginx with the module and the demo model
# (tests/browser/run.sh). playwright-core comes from package-lock.json; without
# node, npm, Chromium or the npm registry the test prints SKIP and passes.
test-browser: $(MODULE) $(DEMO_MODEL)/model.safetensors $(STEREO_MODEL)/model.safetensors
	@if [ ! -f node_modules/playwright-core/package.json ] && command -v npm >/dev/null 2>&1; then \
	    echo "npm ci --ignore-scripts (playwright-core for the browser tests)"; \
	    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
	        || echo "test-browser: npm ci failed; the browser tests will be skipped"; \
	fi
	sh tests/browser/run.sh $(MODULE) $(DEMO_MODEL) $(STEREO_MODEL)

bench: all $(BENCHES) $(MODULE)
	@BUILD=$(BUILD) GOLDEN=$(GOLDEN) MODULE=$(MODULE) sh bench/run.sh

# Only the streamed-audio figures through nginx (the last part of make bench).
bench-stream: all $(BENCHES) $(MODULE)
	@BUILD=$(BUILD) sh bench/stream.sh $(MODULE) $${MG_BENCH_MODEL:-$(BUILD)/bench-model-small}

# Only the medium and large shapes (bench/sizes.sh, also part of make bench).
bench-sizes: all $(BENCHES)
	@BUILD=$(BUILD) sh bench/sizes.sh

# The CUDA backend's figures on the same musicgen-small-shaped random model.
bench-gpu: all $(BENCHES)
	@BUILD=$(BUILD) sh bench/run-gpu.sh

# The nginx module, built against Debian's nginx-dev source tree (or any
# nginx source: NGINX_SRC=...). --with-compat makes the .so loadable into the
# stock binary (PCRE must be on, as in Debian's build, for the signature).
NGINX_SRC ?= /usr/share/nginx/src
$(DEMO_MODEL)/model.safetensors: | $(BUILD)/musicgen-mkmodel
	$(Q)$(BUILD)/musicgen-mkmodel --shape tiny --seed 1 -o $(DEMO_MODEL)
# the second demo model: other weights, a 5 s window
$(DEMO_MODEL2)/model.safetensors: | $(BUILD)/musicgen-mkmodel
	$(Q)$(BUILD)/musicgen-mkmodel --shape tiny --seed 2 --positions 253 -o $(DEMO_MODEL2)

# the same in the stereo layout (facebook/musicgen-stereo-*), for t/009-stereo.t
$(STEREO_MODEL)/model.safetensors: | $(BUILD)/musicgen-mkmodel
	$(Q)$(BUILD)/musicgen-mkmodel --shape tiny --stereo --seed 1 -o $(STEREO_MODEL)

module: $(MODULE)
# nginx's configure lists the sources (config): it runs again when config,
# the CUDA choice or the set of source files changes.
MODULE_FILES = $(sort $(MODULE_SRC) $(LIB_SRC) $(LIB_HDR))
# config compiles docs/openapi.json in (musicgen_openapi); a changed document
# is written again into the configured tree (OPENAPI_C) and rebuilt there.
OPENAPI_C = $(BUILD)/nginx/objs/ngx_http_musicgen_openapi_doc.c
$(MODULE): config $(MODULE_SRC) $(LIB_SRC) $(LIB_HDR) $(CU_OBJ) $(BUILD)/cuda-$(CUDA).stamp \
           docs/openapi.json scripts/openapi-doc-c.sh
	@test -x $(NGINX_SRC)/configure || { echo "no nginx source at $(NGINX_SRC): apt-get install nginx-dev, or set NGINX_SRC"; exit 1; }
	@if [ ! -f $(BUILD)/nginx/Makefile ] || [ $(BUILD)/cuda-$(CUDA).stamp -nt $(BUILD)/nginx/Makefile ] \
	    || [ config -nt $(BUILD)/nginx/Makefile ] \
	    || [ "$$(cat $(BUILD)/nginx/mg-files 2>/dev/null)" != "$(MODULE_FILES)" ]; then \
	    rm -rf $(BUILD)/nginx && mkdir -p $(BUILD) && cp -r $(NGINX_SRC) $(BUILD)/nginx && \
	    cd $(BUILD)/nginx && MG_CUDA_OBJS="$(abspath $(CU_OBJ))" MG_CUDA_LIBS="$(MODULE_CUDA_LIBS)" \
	        ./configure --with-compat --with-threads --with-cc-opt="$(NGX_CC_OPT)" \
	        --add-dynamic-module=$(CURDIR) > configure.log || { cat configure.log; exit 1; }; \
	    echo "$(MODULE_FILES)" > mg-files; \
	fi
	@if [ docs/openapi.json -nt $(OPENAPI_C) ] || [ scripts/openapi-doc-c.sh -nt $(OPENAPI_C) ]; then \
	    sh scripts/openapi-doc-c.sh docs/openapi.json $(OPENAPI_C); fi
	$(say) MODULE $(MODULE)
ifeq ($(V),1)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
else
	@$(MAKE) --no-print-directory -s -C $(BUILD)/nginx -f objs/Makefile modules > $(BUILD)/nginx/build.log 2>&1 \
	    || { cat $(BUILD)/nginx/build.log; echo "the nginx module build failed (log: $(BUILD)/nginx/build.log)"; exit 1; }
endif
MODULE_CUDA_LIBS = $(if $(CU_OBJ),-L$(CUDA_LIBDIR) -lcudart_static -ldl -lrt -lstdc++)
# What nginx's configure needs to link the CUDA backend into the module, for
# debian/rules (the package's "cuda" build profile): build the kernels with
# cuda-objects first, then read these assignments.
cuda-objects: $(CU_OBJ)
module-cuda-env:
	@echo 'MG_CUDA_OBJS="$(abspath $(CU_OBJ))"; MG_CUDA_LIBS="$(MODULE_CUDA_LIBS)"'
NGX_SAN_OPT = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
NGX_CC_OPT = -O2 -g -fPIC $(if $(filter 1,$(SAN)),$(NGX_SAN_OPT))

# conf/nginx.conf with this checkout's paths, running on 127.0.0.1:8080.
$(SERVE)/nginx.conf: conf/nginx.conf $(MODULE) $(DEMO_MODEL)/model.safetensors
	@mkdir -p $(SERVE)/logs
	$(say) CONF $@
	$(Q)sed -e 's#@MODULE@#$(CURDIR)/$(MODULE)#' -e 's#@MODEL@#$(CURDIR)/$(DEMO_MODEL)#' \
	    -e 's#@PREFIX@#$(SERVE)#' -e 's#@HTML@#$(CURDIR)/html#' conf/nginx.conf > $@
serve: all $(SERVE)/nginx.conf
	@-nginx -p $(SERVE) -c $(SERVE)/nginx.conf -s stop 2>/dev/null; sleep 0.5
	nginx -p $(SERVE) -c $(SERVE)/nginx.conf
	@echo "ngx-musicgen is listening on http://127.0.0.1:8080 (demo model: random weights, noise-like audio)"
	@echo "open http://127.0.0.1:8080/ in a browser for the photo-to-music page"
	@echo "try:  curl -s -o clip.wav 'http://127.0.0.1:8080/generate?prompt=calm+piano&duration=3&seed=7' && file clip.wav"
	@echo "stop: make stop"
stop:
	nginx -p $(SERVE) -c $(SERVE)/nginx.conf -s stop

# A tiny random model and one clip from the CLI: proves the build end to end.
demo: all $(DEMO_MODEL)/model.safetensors
	$(BUILD)/musicgen -m $(DEMO_MODEL) -p "calm piano with soft drums" -d 3 --seed 7 -o demo.wav
	@echo "demo: wrote demo.wav (random weights: the sound is noise-like; use 'make model' for the real one)"

# Fuzzing: clang libFuzzer with ASan+UBSan over the pure parsers (fuzz/fuzz_*.c),
# linked with just the engine files they reach. fuzz/run.sh keeps the working
# corpus and any crash reproducers in build-fuzz/; fuzz/corpus/ holds the seeds.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 15
FUZZ_SPIECE  ?= $(wildcard $(GOLDEN)/tiny-a/spiece.model)
FUZZ_LIB_SRC  = src/base/error.c src/service/request.c src/service/prompt.c src/io/audio.c \
                src/io/audio_stream.c src/io/level.c src/io/echo.c src/io/ogg_opus.c \
                src/io/resample.c src/service/base64.c src/io/safetensors.c src/io/config.c \
                src/io/spm_model.c src/io/tokenizer.c tools/spm_write.c src/io/audio_decode.c \
                src/service/audio_prompt.c src/io/shard_index.c src/io/channels.c
FUZZ_CFLAGS   = $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_TARGETS  = $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard fuzz/fuzz_*.c))
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(say) CC $<
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/fuzz/fuzz_%.o $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
	$(say) LD $@
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined $^ -o $@ -ljansson -lsndfile -lFLAC -lmp3lame -lopus -logg -lsoxr -lm -pthread
.SECONDARY: $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o) $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(wildcard fuzz/fuzz_*.c))
fuzz-build: $(FUZZ_TARGETS)
fuzz: $(FUZZ_TARGETS)
	MG_FUZZ_SPIECE=$(FUZZ_SPIECE) FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

# any hub repository id: MODEL=facebook/musicgen-stereo-medium -> models/musicgen-stereo-medium
MODEL ?= facebook/musicgen-small

# The Debian package libnginx-mod-http-musicgen (debian/), built by
# dpkg-buildpackage from a copy of the sources in $(DEB_DIR), where the .deb
# lands. CPU-only; DEB_BUILD_PROFILES=cuda links the CUDA backend (nvcc).
DEB_DIR  = build/deb
DEB_SRC  = Makefile config ngx_http_musicgen_module.c src kernels tools html scripts README.md docs debian
deb:
	@rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/ngx-musicgen
	@cp -r $(DEB_SRC) $(DEB_DIR)/ngx-musicgen/
	cd $(DEB_DIR)/ngx-musicgen && dpkg-buildpackage -b -us -uc -j2
	@ls $(DEB_DIR)/*.deb

# The package installed into the machine's nginx, a generation through it,
# lintian, then purged (tests/deb_install.sh; needs root, says SKIP otherwise).
test-deb: deb
	sh tests/deb_install.sh $(DEB_DIR)

model:
	sh scripts/fetch-model.sh $(MODEL) models/$(notdir $(MODEL))

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
