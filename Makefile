# The two commands: `make run` (the sample job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test venv venv-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.stamp-run: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp-run
venv-test: $(VENV)/.stamp-test

run: venv
	$(PY) -m nbjobs run sample_notebooks/restaurant_job.yml

test: venv-test
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .nbjobs
