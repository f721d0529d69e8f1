# gpuwatch: `make demo` runs the main job on the bundled samples, `make test` runs the linters,
# the type checker (mypy, configured in pyproject.toml) and every test,
# `make bench` measures speed and memory at scale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLES := data/samples
OUT    := out

.PHONY: demo test lint bench bench-indep bench-runs fuzz samples model clean screenshot

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,dask]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(OUT)
	$(BIN)/gpuwatch train --telemetry $(SAMPLES)/telemetry.parquet --access $(SAMPLES)/access.jsonl.gz \
	  --tenants $(SAMPLES)/tenants.csv --registry $(OUT)/models
	$(BIN)/gpuwatch score --telemetry $(SAMPLES)/telemetry.parquet --access $(SAMPLES)/access.jsonl.gz \
	  --tenants $(SAMPLES)/tenants.csv --registry $(OUT)/models \
	  --out $(OUT)/scores.parquet --metrics-file $(OUT)/gpuwatch.prom
	$(BIN)/gpuwatch models list --registry $(OUT)/models
	$(BIN)/gpuwatch evaluate --scores $(OUT)/scores.parquet --truth $(SAMPLES)/truth.csv \
	  --out $(OUT)/evaluation
	$(BIN)/gpuwatch drift --scores $(OUT)/scores.parquet --registry $(OUT)/models
	$(BIN)/gpuwatch report --scores $(OUT)/scores.parquet --telemetry $(SAMPLES)/telemetry.parquet \
	  --access $(SAMPLES)/access.jsonl.gz --tenants $(SAMPLES)/tenants.csv --out $(OUT)/report.html

test: $(STAMP)
	$(BIN)/ruff check detector tests bench
	$(BIN)/ruff format --check detector tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check detector tests bench
	$(BIN)/ruff format --check detector tests bench
	$(BIN)/mypy

samples: $(STAMP)
	$(BIN)/gpuwatch simulate --out $(SAMPLES) --tenants 40 --days 3 --seed 7

# The default model shipped in the registry models/ (synthetic samples only; see its
# MODEL_CARD.md): a new model folder, promoted when it does not rank held-out labels worse.
model: $(STAMP)
	mkdir -p $(OUT)
	$(BIN)/gpuwatch train --telemetry $(SAMPLES)/telemetry.parquet --access $(SAMPLES)/access.jsonl.gz \
	  --tenants $(SAMPLES)/tenants.csv --registry models --promote --quarantine $(OUT)/model-quarantine.csv

# Benchmark (not a test): simulated fleets of SIZES rows; DuckDB reference, feature stage and
# `gpuwatch score` per size -> bench/results.md. E.g. make bench SIZES="1e6 1e7 3e7 1e8"
SIZES ?= 1e6 1e7 3e7
BENCH_OUT ?= bench/results.md
bench: $(STAMP)
	$(BIN)/python bench/run.py $(SIZES) --out $(BENCH_OUT)

# Fuzzing (not in `make test`, which runs 300 hypothesis inputs per reader and 300 model trials):
# FUZZ_INPUTS generated inputs to each of the 13 readers and FUZZ_TRIALS damaged copies of the
# promoted model (tests/fuzz_run.py, FUZZ_JOBS processes, within FUZZ_SECONDS if set); no
# traceback, no crash, read = accepted + quarantined + out of window on every input, 0 silent
# model loads; counts per reader -> bench/fuzz_results.md, failing inputs -> out/fuzz-failures.
# Then, if atheris is installed (`pip install atheris`: a wheel, no compiler), each reader
# coverage-guided for FUZZ_ATHERIS_SECONDS (tests/fuzz_atheris.py; corpus in out/fuzz-corpus).
FUZZ_INPUTS ?= 100000
FUZZ_TRIALS ?= 100000
FUZZ_JOBS ?= 2
FUZZ_SECONDS ?=
FUZZ_ATHERIS_SECONDS ?= 300
FUZZ_READERS := cloudtrail csv gzip json jsonl labels nvml openmetrics parquet prometheus sshd \
  tenants vpcflow
fuzz: $(STAMP)
	nice -n 19 $(BIN)/python tests/fuzz_run.py --inputs $(FUZZ_INPUTS) --trials $(FUZZ_TRIALS) \
	  --jobs $(FUZZ_JOBS) $(if $(FUZZ_SECONDS),--seconds $(FUZZ_SECONDS)) --out bench/fuzz_results.md
	@if $(BIN)/python -c 'import atheris' 2>/dev/null; then \
	  for r in $(FUZZ_READERS); do nice -n 19 $(BIN)/python tests/fuzz_atheris.py $$r \
	    $(OUT)/fuzz-corpus/$$r -max_total_time=$(FUZZ_ATHERIS_SECONDS) -max_len=4096 \
	    -artifact_prefix=$(OUT)/fuzz-failures/$$r- || exit 1; done; \
	else echo "atheris is not installed (pip install atheris): coverage-guided runs skipped"; fi

# Independent labelled benchmark (not a test): fleets from bench/indep/generate.py, the real CLI
# trains on one and scores the other, per seed pair -> bench/indep/results.md (see its README).
INDEP_PAIRS ?= 9103:9104 9201:9202
bench-indep: $(STAMP)
	$(BIN)/python bench/indep/evaluate.py $(foreach p,$(INDEP_PAIRS),--pair $(p)) \
	  --work $(OUT)/indep --out bench/indep/results.md

# Scheduled runs: kill -9 trials of `gpuwatch score` (torn, mismatched, leftover outputs) and a
# load test of `gpuwatch serve` (requests/s, p99) -> bench/kill_trials.md and the terminal.
TRIALS ?= 100
bench-runs: $(STAMP)
	$(BIN)/python bench/kill_trials.py $(TRIALS) --out bench/kill_trials.md
	$(BIN)/python bench/serve_load.py --clients 20 --seconds 5

# The README's screenshots of the analyst report on the samples (headless Chromium).
screenshot: demo
	$(BIN)/python tests/chromium.py $(OUT)/report.html docs/report-overview.png 1700
	$(BIN)/python tests/chromium.py $(OUT)/report.html docs/report-case.png 2300 article.case

clean:
	rm -rf $(OUT) .pytest_cache
