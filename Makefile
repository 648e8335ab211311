# Two commands do everything: `make demo` (the main job) and `make test` (the whole suite).
# Both create or reuse .venv, install what they need, and make sure Fashion-MNIST is present.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP_R := $(VENV)/.stamp-runtime
STAMP_T := $(VENV)/.stamp-test
PYTEST_ARGS ?=

.PHONY: demo test bench data venv lint clean

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

# Benchmarks run the float baselines at their best: the OpenBLAS variables are unset for this command only.
bench: $(STAMP_T)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(VPY) -m benchmarks.run $(BENCH_ARGS)

lint: $(STAMP_T)
	$(VPY) -m ruff check nn kernels methods scripts tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache runs
