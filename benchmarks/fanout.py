"""Benchmark 2: a 20-notebook fan-out job, nbjobs vs a papermill loop and vs papermill in `cores` threads.

    python benchmarks/fanout.py [--tasks 20]

Goals: >= 5x faster than the loop, >= 2x faster than the threads. The nbjobs job has `--tasks`
independent notebook tasks (the trivial notebook with a different parameter each) run with the
default concurrency (the number of cores). Measured with the pool as a long-lived process has it
(warm: its `cores` kernels ready) and from a cold pool (fork server and kernels started by the run).
"""
from __future__ import annotations

import argparse
import time

from _common import (run_job, CORES, fanout_settings, make_notebook, ms, papermill_loop, papermill_run, papermill_threads,
                     print_table, quiet, verdict, wait_pool_full, workspace)



def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args(argv)
    quiet()
    from nbjobs.compute.kernels import shutdown_pools

    n = args.tasks
    with workspace() as (ws, tmp):
        notebook = make_notebook(tmp / "nb")
        out = tmp / "out"
        out.mkdir()
        papermill_run(notebook, out, -1)  # warm-up: imports
        loop = papermill_loop(notebook, out, n)
        threads = papermill_threads(notebook, out, n, CORES)

        shutdown_pools()
        cold = run_job(ws, fanout_settings(notebook, n))       # fork server + kernels started by the run
        wait_pool_full()
        warm = run_job(ws, fanout_settings(notebook, n))
    rows = [
        (f"papermill loop, {n} notebooks", ms(loop), ""),
        (f"papermill in {CORES} threads", ms(threads), ""),
        (f"nbjobs job, {n} tasks (warm pool)", ms(warm),
         f"{loop / warm:.1f}x the loop (goal >= 5: {verdict(loop / warm >= 5)}), "
         f"{threads / warm:.1f}x the threads (goal >= 2: {verdict(threads / warm >= 2)})"),
        (f"nbjobs job, {n} tasks (cold pool)", ms(cold),
         f"{loop / cold:.1f}x the loop, {threads / cold:.1f}x the threads"),
    ]
    print_table(f"Benchmark 2: {n}-notebook fan-out", rows)
    return {"loop": loop, "threads": threads, "warm": warm, "cold": cold}


if __name__ == "__main__":
    main()
