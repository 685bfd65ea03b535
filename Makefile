# `make test` and `make demo` work on a fresh machine with Python 3.11+ and make:
# the first run creates .venv and installs requirements-dev.txt into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export AWS_EC2_METADATA_DISABLED := true

.PHONY: test lint format build demo bench cost stackset-template clean

$(STAMP): requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

# Then the tests marked dates once more, as if the machine's clock were a year ahead: a test
# that reads the real clock where it should read its own fails there (tests/conftest.py).
test: $(STAMP) lint
	$(BIN)/python -m scripts.build --check
	$(BIN)/python -m pytest -n 2 --dist loadfile
	$(BIN)/python -m pytest -n 2 --dist loadfile -m dates --clock-ahead 365

demo: $(STAMP)
	@$(BIN)/python -m scripts.demo

bench: $(STAMP)
	$(BIN)/python -m scripts.bench $(BENCH_ARGS)

cost: $(STAMP)
	@$(BIN)/python -m scripts.cost

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy

format: $(STAMP)
	$(BIN)/python -m ruff check --fix .
	$(BIN)/python -m ruff format .

stackset-template: $(STAMP)
	@$(BIN)/python -m scripts.stackset_template

# The three job files at the root are built from src/ebs_snapshots: edit there, then this.
build:
	$(PYTHON) -m scripts.build

# `sam build` (template.yaml, BuildMethod: makefile): each function gets its one job file.
# SAM runs them here in the checkout (WorkingDirectory), having copied only CodeUri (src/).
build-CreatorFunction:
	$(PYTHON) -m scripts.build --check
	cp ebs_snapshot_creator.py $(ARTIFACTS_DIR)/
build-CopierFunction:
	$(PYTHON) -m scripts.build --check
	cp ebs_snapshot_copier.py $(ARTIFACTS_DIR)/
build-ManagerFunction:
	$(PYTHON) -m scripts.build --check
	cp ebs_snapshot_manager.py $(ARTIFACTS_DIR)/

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
