# Two commands for a newcomer: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# llama.cpp is compiled once into a wheel kept outside the checkout. It is built for AVX2 without AMX: a
# -march=native build segfaults in llama_decode on Sapphire Rapids machines whose sandbox does not grant AMX tiles,
# and pip's own wheel cache would hand that broken native wheel back on every install.
LLAMA_VERSION := 0.3.36
LLAMA_WHEELS  ?= $(HOME)/.cache/reflectkit-wheels/llama-$(LLAMA_VERSION)-avx2
LLAMA_CMAKE   := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
                 -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

# llama.cpp's own server (for the test that `score` refuses it: it returns no prompt log-probs), built once from the
# llama.cpp that the llama-cpp-python $(LLAMA_VERSION) sdist vendors: only the llama-server target, same CPU flags.
LLAMA_SERVER_DIR ?= $(HOME)/.cache/reflectkit-wheels/llama-server-$(LLAMA_VERSION)

.PHONY: demo test test-fast venv browser bench clean llama-server

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: this CPU build is on the machine's disk (a plain `torch` pulls a CUDA build).
	$(PY) -m pip install --quiet torch==2.13.0
	@ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || { \
	  echo "building llama-cpp-python $(LLAMA_VERSION) (AVX2, once; about 10 minutes on 2 cores)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(PY) -m pip wheel --quiet --no-cache-dir --no-deps \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_WHEELS); }
	$(PY) -m pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  { echo "installing Debian chromium for the browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "WARNING: could not install chromium; browser tests will fail"; }

llama-server: $(STAMP)
	@test -x $(LLAMA_SERVER_DIR)/bin/llama-server || { set -e; \
	  echo "building llama.cpp's llama-server $(LLAMA_VERSION) (once; about 11 minutes on 2 cores)"; \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(PY) -m pip download --quiet --no-binary :all: --no-deps llama-cpp-python==$(LLAMA_VERSION) -d $$tmp; \
	  tar xzf $$tmp/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C $$tmp; \
	  cmake -S $$tmp/llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp -B $$tmp/build -DCMAKE_BUILD_TYPE=Release \
	    $(LLAMA_CMAKE) -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
	    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >/dev/null; \
	  cmake --build $$tmp/build --target llama-server -j $$(nproc) >/dev/null; \
	  mkdir -p $(LLAMA_SERVER_DIR)/bin; cp $$tmp/build/bin/llama-server $(LLAMA_SERVER_DIR)/bin/; }

demo: $(STAMP)
	$(VENV)/bin/reflectkit run examples/demo.yaml

test: $(STAMP) browser llama-server
	$(PY) -m pytest -q --durations=25 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
