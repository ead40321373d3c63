"""Benchmark 1: single notebook task latency, nbjobs (warm pool) vs `papermill.execute_notebook`.

    python benchmarks/single_task.py [--repeat 10]

Goal: nbjobs <= 1/10 of papermill. nbjobs is measured two ways: the executor alone
(`run_notebook_task`) and a whole one-task job run (`Workspace.run_now`: run rows, state, task
values and the executed notebook persisted). Each is the median of `--repeat` runs, after one
warm-up of each (imports), with the pool refilled between runs (a warm pool is the claim).
"""
from __future__ import annotations

import argparse
import asyncio
import time

from _common import (make_notebook, median, ms, papermill_run, print_table, quiet, verdict, wait_pool_full,
                     workspace)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    quiet()
    from nbjobs.kernel.context import TaskContext
    from nbjobs.tasks.notebook import run_notebook_task

    with workspace() as (ws, tmp):
        notebook = make_notebook(tmp / "nb")
        out = tmp / "out"
        out.mkdir()
        papermill_run(notebook, out, -1)  # warm-up: imports
        pm = []
        for i in range(args.repeat):
            started = time.perf_counter()
            papermill_run(notebook, out, i)
            pm.append(time.perf_counter() - started)

        job_id = ws.create_job({"name": "single", "tasks": [
            {"task_key": "nb", "notebook_task": {"notebook_path": str(notebook), "base_parameters": {"x": "1"}}}]})
        ws.run_now(job_id)  # warm-up: imports, pool start
        executor, job = [], []
        for i in range(args.repeat):
            wait_pool_full()
            ctx = TaskContext(job_id=1, job_name="bench", run_id=1, task_key="nb", task_run_id=i,
                              run_dir=str(tmp / "exec" / str(i)))
            started = time.perf_counter()
            result = asyncio.run(run_notebook_task(notebook, {"x": str(i)}, ctx, notebook.parent))
            executor.append(time.perf_counter() - started)
            assert result.error is None, result.error
            wait_pool_full()
            started = time.perf_counter()
            run = ws.run_now(job_id)
            job.append(time.perf_counter() - started)
            assert run["state"]["result_state"] == "SUCCESS", run["state"]
    p, e, j = median(pm), median(executor), median(job)
    rows = [
        ("papermill.execute_notebook", ms(p), f"median of {args.repeat}"),
        ("nbjobs run_notebook_task (warm pool)", ms(e), f"{p / e:.1f}x faster"),
        ("nbjobs one-task job run_now (warm pool)", ms(j), f"{p / j:.1f}x faster; ratio {j / p:.3f} "
                                                          f"(goal <= 0.1: {verdict(j / p <= 0.1)})"),
    ]
    print_table("Benchmark 1: single notebook task latency", rows)
    return {"papermill": p, "executor": e, "job": j, "ratio": j / p}


if __name__ == "__main__":
    main()
