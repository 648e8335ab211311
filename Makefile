# Two commands do everything: `make demo` (the main job) and `make test` (the whole suite).
# Both create or reuse .venv, install what they need, and make sure Fashion-MNIST is present.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP_R := $(VENV)/.stamp-runtime
STAMP_T := $(VENV)/.stamp-test
PYTEST_ARGS ?=

.PHONY: demo test test-avx2 bench data venv lint clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

$(STAMP_R): requirements.txt | $(VPY)
	$(VPY) -m pip install --quiet -r requirements.txt
	touch $@

$(STAMP_T): requirements.txt requirements-test.txt | $(VPY)
	$(VPY) -m pip install --quiet -r requirements-test.txt
	touch $@ $(STAMP_R)

data: $(STAMP_R)
	$(VPY) -m nn.data ensure fashion-mnist

demo: $(STAMP_R) data
	$(VPY) -m scripts.lwnn demo $(DEMO_ARGS)

test: $(STAMP_T) data
	$(VPY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The real-data method tests once more on the AVX2 code path of an AVX-512 machine: numba compiles for Haswell
# (no AVX-512: 256-bit conv tiles, pshufb popcount, the int16 int8 path) and OpenBLAS runs its Haswell kernel,
# so a claim that holds only on one ISA's rounding fails here. On an AVX2-only CPU it repeats `make test`'s run.
AVX2_FEATURES := +64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,+popcnt,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,+xsaveopt
test-avx2: $(STAMP_T) data
	NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=$(AVX2_FEATURES) OPENBLAS_CORETYPE=Haswell \
	  $(VPY) -m pytest -n 2 --dist loadgroup tests/methods $(PYTEST_ARGS)

# Benchmarks run the float baselines at their best: the OpenBLAS variables are unset for this command only.
bench: $(STAMP_T)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(VPY) -m benchmarks.run $(BENCH_ARGS)

lint: $(STAMP_T)
	$(VPY) -m ruff check nn kernels methods scripts tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache runs
