# Each target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Train and export the default GAN, score it, serve it, fetch 16 digits over gRPC. Training
# gets a fixed 4 minutes so the demo ends soon on any CPU (what that buys per CPU type:
# docs/BENCHMARKS.md, summary); `make demo` again resumes where it stopped.
demo: $(STAMP)
	$(PY) -m gan_pkg.fit --max-time 4m
	$(PY) -m gan_pkg.evaluate --export export/gan
	@$(PY) serving/server.py --model_base_path export/gan & server=$$!; \
	  $(PY) serving/client.py --server localhost:8500 --num 16 --seed 0 --out samples.png; status=$$?; \
	  kill -TERM $$server; wait $$server; exit $$status

# One pytest-xdist worker per core: most tests wait on tracing, subprocess start-up or
# loopback I/O, which another worker fills. worksteal: a worker that runs dry takes tests
# queued for the other, so a few long tests near the end do not leave a core idle.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n auto --dist worksteal --durations=15

bench: $(STAMP)
	$(PY) bench/train_throughput.py --parts
	$(PY) bench/step_profile.py
	$(PY) bench/serving_latency.py
	$(PY) bench/grpc_floor.py
	$(PY) bench/time_to_quality.py

clean:
	rm -rf $(VENV) runs export
