"""Benchmark 3: orchestration cost. 1,000 condition tasks in a DAG, state persisted, vs one cold papermill
notebook; and 10,000 tasks vs 1,000.

    python benchmarks/conditions.py [--tasks 1000] [--scale 10] [--profile]

Goals: the 1,000-task run takes less wall time than one papermill notebook (kernel start, run,
shutdown); the 10,000-task run takes <= 11x the 1,000-task run (linear). The DAG: a chain of
layers, each task depending on one or two tasks of the layer before, some through a condition's
`outcome`; every task compares a job parameter or an upstream outcome. The time is `run_now`
(run rows created, every task run's state persisted, run finished); job creation is shown apart.
"""
from __future__ import annotations

import argparse
import gc
import time

from _common import make_notebook, median, ms, papermill_run, print_table, quiet, verdict, workspace

WIDTH = 10  # tasks per layer


def condition_dag(n: int) -> dict:
    tasks = []
    for i in range(n):
        layer, slot = divmod(i, WIDTH)
        task = {"task_key": f"c{i}",
                "condition_task": {"op": "GREATER_THAN_OR_EQUAL", "left": "{{job.parameters.level}}",
                                   "right": str(slot % 3)}}
        if layer:
            first = (layer - 1) * WIDTH + slot
            deps = [{"task_key": f"c{first}"}]
            if slot % 2:
                deps.append({"task_key": f"c{(layer - 1) * WIDTH + (slot + 1) % WIDTH}", "outcome": "true"})
                task["run_if"] = "AT_LEAST_ONE_SUCCESS"
            task["depends_on"] = deps
        tasks.append(task)
    return {"name": f"conditions-{n}", "parameters": [{"name": "level", "default": "5"}], "tasks": tasks}


def run_dag(ws, n: int) -> tuple[float, float, dict]:
    gc.collect()  # the previous run's garbage is not collected inside this one's measurement
    started = time.perf_counter()
    job_id = ws.create_job(condition_dag(n))
    created = time.perf_counter() - started
    started = time.perf_counter()
    run = ws.run_now(job_id)
    elapsed = time.perf_counter() - started
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    return created, elapsed, run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7, help="runs of each measure (medians are compared)")
    parser.add_argument("--profile", action="store_true", help="pyinstrument profile of one large run")
    args = parser.parse_args(argv)
    quiet()
    big_n = args.tasks * args.scale
    with workspace() as (ws, tmp):
        notebook = make_notebook(tmp / "nb")
        out = tmp / "out"
        out.mkdir()
        papermill_run(notebook, out, -1)  # warm-up: imports
        run_dag(ws, 50)                   # warm-up: imports
        pm, small, big, create_small, create_big = [], [], [], [], []
        for i in range(args.repeat):  # interleaved, so a slow moment of a shared machine hits all three alike
            gc.collect()
            started = time.perf_counter()
            papermill_run(notebook, out, i)
            pm.append(time.perf_counter() - started)
            created, elapsed, run = run_dag(ws, args.tasks)
            assert len(run["tasks"]) == args.tasks
            small.append(elapsed)
            create_small.append(created)
            created, elapsed, run = run_dag(ws, big_n)
            assert len(run["tasks"]) == big_n
            big.append(elapsed)
            create_big.append(created)
        if args.profile:
            from pyinstrument import Profiler
            profiler = Profiler()
            profiler.start()
            run_dag(ws, big_n)
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False))
    paper, s, b = median(pm), median(small), median(big)
    rows = [
        ("one papermill notebook", ms(paper), f"median of {args.repeat}"),
        (f"nbjobs {args.tasks:,} condition tasks", ms(s),
         f"{s / paper:.2f}x papermill (goal < 1: {verdict(s < paper)}); {s / args.tasks * 1e6:,.0f} us/task"),
        (f"nbjobs {big_n:,} condition tasks", ms(b),
         f"{b / s:.1f}x the {args.tasks:,} run (goal <= {args.scale + 1}: "
         f"{verdict(b / s <= args.scale + 1)}); {b / big_n * 1e6:,.0f} us/task"),
        ("job creation (validate + store)", f"{ms(median(create_small))} / {ms(median(create_big))}",
         f"{args.tasks:,} / {big_n:,} tasks, not in the run times"),
    ]
    print_table("Benchmark 3: condition tasks, state persisted (run_now: run created, executed, persisted)", rows)
    return {"papermill": paper, "small": s, "big": b}


if __name__ == "__main__":
    main()
