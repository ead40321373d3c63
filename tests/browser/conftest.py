"""Browser tests: a real JupyterLab on 127.0.0.1 (token, temp root) driven by Playwright with
Debian's chromium. No skips: a missing chromium or Playwright is a failure that says how to fix it.

Node states are read from the graph the browser draws: cytoscape.js keeps its instance on the
container element (`el._cyreg.cy`), the `.nbjobs-graph` widget. Every node's id is its task_key and
its state is both `data.state` and a `state-<name>` class (the class gives the colour).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
FIND_GRAPHS = "() => [...document.querySelectorAll('.nbjobs-graph')].filter(e => e._cyreg && e._cyreg.cy)"


def chromium_path() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium), or run "
                    "`sudo apt-get install -y chromium` (never `playwright install`)", pytrace=False)
    return path


def write_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c.strip("\n")) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server for the test session."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.root.mkdir()
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "lab.log"
        cfg = base / "config"
        (cfg / "labconfig").mkdir(parents=True)
        # no news / update toasts over the notebook
        (cfg / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        self.env = dict(os.environ, JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
                        IPYTHONDIR=str(base / "ipython"), NBJOBS_HOME=str(self.root / ".nbjobs"),
                        PYTHONUNBUFFERED="1")
        self.env.pop("NBJOBS_HOST", None)
        self.env.pop("NBJOBS_TOKEN", None)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={self.base / 'workspaces'}",
               # executed notebooks live under $NBJOBS_HOME/runs (.nbjobs by default: a hidden folder)
               "--ContentsManager.allow_hidden=True"]
        if hasattr(os, "getuid") and os.getuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}", pytrace=False)
            try:
                urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {timeout}s:\n{self.log_tail()}", pytrace=False)
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._log.close()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def notebook_url(self, rel: str) -> str:
        return f"{self.url}/lab/tree/{rel}?reset&token={self.token}"


@pytest.fixture(scope="package")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    server = Lab(base)
    sample = server.root / "restaurant"
    shutil.copytree(ROOT / "sample_notebooks", sample,
                    ignore=shutil.ignore_patterns("warehouse", ".nbjobs", ".ipynb_checkpoints", "__pycache__"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def browser(lab):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - part of the test extra
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    executable = chromium_path()
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, timeout=60_000)
    yield b
    b.close()
    pw.stop()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="package")
def browser_context(browser):
    """One context for the browser tests: JupyterLab's bundles load from its cache after the first test."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def page(request, browser_context, lab, tmp_path):
    pg = browser_context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text[:300]}") if m.type in ("error", "warning")
          else None)
    yield pg
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    try:
        pg.screenshot(path=str(tmp_path / "final.png"), full_page=True)
        if failed:
            pg.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"\nscreenshot of the failure: {tmp_path / 'failure.png'}\npage errors: {errors}\n"
                  f"lab log:\n{lab.log_tail(20)}")
    finally:
        pg.close()


# -- helpers the tests share -------------------------------------------------------------------------
KERNEL_STATUS = ("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                 " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
                 " return k ? k.status : null; }")


def open_notebook(page, lab: Lab, rel: str) -> None:
    """Open a notebook and wait for its kernel's own status to be idle (not the toolbar's)."""
    page.goto(lab.notebook_url(rel))
    page.wait_for_function(f"({KERNEL_STATUS})() === 'idle'", timeout=60_000)


def kernel_status(page) -> str | None:
    return page.evaluate(KERNEL_STATUS)


def run_cell(page, index: int) -> None:
    """Start running a cell (returns at once: the command's promise is not awaited)."""
    page.evaluate("""(i) => { const nb = window.jupyterapp.shell.currentWidget.content;
        nb.activeCellIndex = i; window.jupyterapp.commands.execute('notebook:run-cell'); }""", index)


def run_all(page) -> None:
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def wait_idle(page, timeout: float = 60) -> None:
    page.wait_for_timeout(100)
    page.wait_for_function(f"({KERNEL_STATUS})() === 'idle'", timeout=timeout * 1000)


def cell_output(page, index: int):
    """The output area of the index-th cell."""
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea")


def graph_states(page, nth: int = 0) -> dict[str, str]:
    """{task_key: state} of the nth graph on the page, as cytoscape draws it."""
    return page.evaluate(f"""(n) => {{ const gs = ({FIND_GRAPHS})(); if (gs.length <= n) return null;
        const cy = gs[n]._cyreg.cy; const out = {{}};
        cy.nodes().forEach(node => {{ out[node.id()] = node.data('state'); }}); return out; }}""", nth)


def graph_info(page, nth: int = 0) -> dict:
    """Nodes (id, state, classes, fill colour) and edges (source, target, label) of the nth graph."""
    return page.evaluate(f"""(n) => {{ const cy = ({FIND_GRAPHS})()[n]._cyreg.cy;
        return {{nodes: cy.nodes().map(x => ({{id: x.id(), state: x.data('state'), classes: x.classes(),
                                             fill: x.style('background-color')}})),
                 edges: cy.edges().map(e => ({{source: e.source().id(), target: e.target().id(),
                                              label: e.data('label') || null}}))}}; }}""", nth)


def wait_graph(page, predicate_js: str, nth: int = 0, timeout: float = 60) -> None:
    """Wait until `predicate_js` (a JS expression over `cy`, the nth graph) is true."""
    page.wait_for_function(f"""(n) => {{ const gs = ({FIND_GRAPHS})(); if (gs.length <= n) return false;
        const cy = gs[n]._cyreg.cy; try {{ return !!({predicate_js}); }} catch (e) {{ return false; }} }}""",
                           arg=nth, timeout=timeout * 1000)


def click_node(page, key: str, nth: int = 0) -> None:
    """A real mouse click on a graph node (where cytoscape drew it)."""
    page.locator(".nbjobs-graph").nth(nth).scroll_into_view_if_needed()
    pos = page.evaluate(f"""([n, key]) => {{ const el = ({FIND_GRAPHS})()[n]; const cy = el._cyreg.cy;
        const p = cy.$id(key).renderedPosition(); const r = el.getBoundingClientRect();
        return {{x: r.left + p.x, y: r.top + p.y}}; }}""", [nth, key])
    page.mouse.click(pos["x"], pos["y"])
