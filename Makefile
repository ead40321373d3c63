# The two commands: `make run` (the sample job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test test-pure bench venv venv-test browser-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
# An editable install skips pyproject's data-files: put the Jupyter server extension's
# enabling file where a wheel install puts it.
JUPYTER_CONF := $(VENV)/etc/jupyter/jupyter_server_config.d

$(VENV)/.stamp-run: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	mkdir -p $(JUPYTER_CONF) && cp jupyter-config/jupyter_server_config.d/nbjobs.json $(JUPYTER_CONF)/
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	mkdir -p $(JUPYTER_CONF) && cp jupyter-config/jupyter_server_config.d/nbjobs.json $(JUPYTER_CONF)/
	touch $@

venv: $(VENV)/.stamp-run
venv-test: $(VENV)/.stamp-test

run: venv
	$(PY) -m nbjobs run sample_notebooks/restaurant_job.yml

test: venv-test browser-deps
	$(PY) -m pytest

# One tier alone (markers in pyproject.toml): the pure tier runs in seconds.
test-pure: venv-test
	$(PY) -m pytest -m pure

# The five benchmarks (nbjobs vs papermill, measured in the same run; schedules) and their summary table.
bench: venv-test
	$(PY) benchmarks/run_all.py

# The browser tests (tests/browser) drive Debian's chromium through Playwright (never `playwright install`).
browser-deps:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV) .nbjobs
