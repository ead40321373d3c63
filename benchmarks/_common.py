"""Shared helpers of the benchmark scripts: the trivial notebook, papermill baselines, the result table.

Every benchmark measures nbjobs and its baseline in the same process and run, and prints the ratio.
"""
from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CORES = os.cpu_count() or 1


def make_notebook(folder: Path, name: str = "trivial.ipynb") -> Path:
    """The trivial parameterised notebook every benchmark runs: a `parameters` cell and one more."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("y = int(x) * 2\nprint(y)")]
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def quiet() -> None:
    """Papermill logs a line per notebook and kernels warn about TCP; keep the table readable."""
    for name in ("papermill", "traitlets", "distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings
    warnings.filterwarnings("ignore")


def papermill_run(notebook: Path, out_dir: Path, i: int) -> None:
    import papermill
    papermill.execute_notebook(str(notebook), str(out_dir / f"pm-{i}.ipynb"), parameters={"x": i},
                               progress_bar=False, log_output=False)


def papermill_loop(notebook: Path, out_dir: Path, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        papermill_run(notebook, out_dir, i)
    return time.perf_counter() - started


def papermill_threads(notebook: Path, out_dir: Path, n: int, threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: papermill_run(notebook, out_dir, 1000 + i), range(n)))
    return time.perf_counter() - started


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def workspace() -> Iterator[Any]:
    from nbjobs.service import Workspace

    with tempfile.TemporaryDirectory(prefix="nbjobs-bench-") as tmp:
        ws = Workspace(Path(tmp) / "home")
        try:
            yield ws, Path(tmp)
        finally:
            ws.close()


def wait_pool_full(timeout: float = 60.0) -> None:
    """Wait until the local pool holds its full number of ready kernels and nothing is being killed."""
    from nbjobs.compute.kernels import pool_manager

    manager = pool_manager()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = manager.stats()
        if len(stats["ready"]) >= manager.size and not stats["starting"] and not stats["disposing"]:
            return
        time.sleep(0.05)


def fanout_settings(notebook: Path, n: int, **task_extra: Any) -> dict:
    return {"name": f"fanout-{n}", "tasks": [
        {"task_key": f"nb{i}", "notebook_task": {"notebook_path": str(notebook), "base_parameters": {"x": str(i)}},
         **task_extra} for i in range(n)]}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    """rows: (measure, value, note)."""
    width = [max(len(r[i]) for r in rows + [("measure", "value", "goal / note")]) for i in range(3)]
    print(f"\n{title}  (cores: {CORES}, python {sys.version.split()[0]})")
    header = ("measure", "value", "goal / note")
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, width)))
    print("  " + "  ".join("-" * w for w in width))
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, width)))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run_job(ws, settings: dict) -> float:
    """Create the job, run it and wait; the run's wall time in seconds (it must succeed)."""
    job_id = ws.create_job(settings)
    started = time.perf_counter()
    run = ws.run_now(job_id)
    elapsed = time.perf_counter() - started
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    return elapsed
