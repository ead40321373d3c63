"""Benchmark 4: the 20-notebook fan-out job on a 2-worker Dask LocalCluster vs the local pool.

    python benchmarks/dask_fanout.py [--tasks 20] [--workers 2] [--repeat 3]

Goal: Dask <= 1.3x local. Both are the same job (`--tasks` independent trivial notebooks); the Dask
run's tasks name a job cluster (`job_clusters[].new_cluster.num_workers = --workers`), so the run
starts a LocalCluster on 127.0.0.1, its workers start their own warm kernel pools, and the cluster is
closed at the end of the run: all of that is inside the measured time. The local run starts from a
cold pool too (the pool is shut down before it), so both sides pay their start-up.
"""
from __future__ import annotations

import argparse
import time

from _common import run_job, fanout_settings, make_notebook, median, ms, print_table, quiet, verdict, workspace



def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    quiet()
    from nbjobs.compute.kernels import shutdown_pools

    n = args.tasks
    with workspace() as (ws, tmp):
        notebook = make_notebook(tmp / "nb")
        local_settings = fanout_settings(notebook, n)
        dask_settings = fanout_settings(notebook, n, job_cluster_key="bench")
        dask_settings["job_clusters"] = [{"job_cluster_key": "bench",
                                          "new_cluster": {"num_workers": args.workers}}]
        run_job(ws, fanout_settings(notebook, 2))  # warm-up: imports in this process
        local, dask = [], []
        for _ in range(args.repeat):  # interleaved
            shutdown_pools()
            local.append(run_job(ws, local_settings))
            shutdown_pools()
            dask.append(run_job(ws, dask_settings))
    lo, da = median(local), median(dask)
    rows = [
        (f"local pool, {n} tasks (cold pool)", ms(lo), f"median of {args.repeat}; runs: "
                                                    + ", ".join(ms(x) for x in local)),
        (f"Dask LocalCluster, {args.workers} workers, {n} tasks", ms(da),
         f"{da / lo:.2f}x local (goal <= 1.3: {verdict(da / lo <= 1.3)}); with cluster start and close; runs: "
         + ", ".join(ms(x) for x in dask)),
        ("first Dask run / first local run", f"{dask[0] / local[0]:.2f}x",
         "the first job cluster of a process also starts the fork server its workers come from"),
    ]
    print_table(f"Benchmark 4: {n}-notebook fan-out on Dask vs local", rows)
    return {"local": lo, "dask": da}


if __name__ == "__main__":
    main()
