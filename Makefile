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

# Train and export the default GAN (dcgan-classcode), score it, serve it, fetch 16 digits
# over gRPC. Training gets 4 minutes of the default's 5,004 steps: about 3,000 where the CPU
# has bfloat16 (AMX: `dcgan`, whose step costs about the same, ran 3,014 in 238 s), under a
# fifth in float32 on AVX2-only CPUs (807-924 on the EPYC); `make demo` again resumes where it stopped.
demo: $(STAMP)
	$(PY) -m gan_pkg.fit --max-time 4m
	$(PY) -m gan_pkg.evaluate --export export/gan
	@$(PY) serving/server.py --model_base_path export/gan & server=$$!; \
	  $(PY) serving/client.py --server localhost:8500 --num 16 --seed 0 --out samples.png; status=$$?; \
	  kill -TERM $$server; wait $$server; exit $$status

# One pytest-xdist worker per core: most tests wait on tracing, subprocess start-up or
# loopback I/O, so two workers on 2 cores took the suite from 13:56 to 9:29 here.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n auto --durations=15

bench: $(STAMP)
	$(PY) bench/train_throughput.py --parts
	$(PY) bench/serving.py
	$(PY) bench/grpc_floor.py
	$(PY) bench/time_to_quality.py

clean:
	rm -rf $(VENV) runs export
