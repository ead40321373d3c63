"""All five benchmarks in one run, then the summary table (the README's benchmark table).

    python benchmarks/run_all.py            # or: make bench

Each benchmark also runs alone: single_task.py, fanout.py, conditions.py, dask_fanout.py, schedules.py.
"""
from __future__ import annotations

import platform
import time

import conditions
import dask_fanout
import fanout
import schedules
import single_task
from _common import CORES, ms


def main() -> None:
    started = time.perf_counter()
    one = single_task.main([])
    fan = fanout.main([])
    cond = conditions.main([])
    dask = dask_fanout.main([])
    sched = schedules.main([])
    rows = [
        ("1. one notebook task: nbjobs run_now (warm pool) / papermill.execute_notebook",
         f"{ms(one['job'])} / {ms(one['papermill'])}", f"{one['job'] / one['papermill']:.3f}", "<= 0.1"),
        ("2. 20-notebook fan-out: papermill loop / nbjobs", f"{ms(fan['loop'])} / {ms(fan['warm'])}",
         f"{fan['loop'] / fan['warm']:.1f}x", ">= 5x"),
        (f"2. 20-notebook fan-out: papermill in {CORES} threads / nbjobs", f"{ms(fan['threads'])} / {ms(fan['warm'])}",
         f"{fan['threads'] / fan['warm']:.1f}x", ">= 2x"),
        ("3. 1,000 condition tasks / one papermill notebook", f"{ms(cond['small'])} / {ms(cond['papermill'])}",
         f"{cond['small'] / cond['papermill']:.2f}", "< 1"),
        ("3. 10,000 / 1,000 condition tasks", f"{ms(cond['big'])} / {ms(cond['small'])}",
         f"{cond['big'] / cond['small']:.1f}x", "<= 11x"),
        ("4. 20 notebooks on a 2-worker Dask LocalCluster / local", f"{ms(dask['dask'])} / {ms(dask['local'])}",
         f"{dask['dask'] / dask['local']:.2f}x", "<= 1.3x"),
        (f"5. 1,000 schedules: scheduled run start after its slot, p50 / p99 ({sched['runs']} runs)",
         f"{ms(sched['p50'])} / {ms(sched['p99'])}", f"p99 {sched['p99']:.2f} s", "p99 < 1 s"),
        ("5. 1,000 schedules: the scheduler's CPU while idle", f"{sched['idle_cpu'] * 100:.2f} % of a core",
         f"{sched['idle_cpu'] * 100:.2f} %", "< 1 %"),
    ]
    print(f"\nSummary ({platform.system()} {platform.machine()}, {CORES} cores, "
          f"python {platform.python_version()}; {time.perf_counter() - started:.0f} s)\n")
    print("| benchmark | measured | ratio | goal |")
    print("|---|---|---|---|")
    for name, measured, ratio, goal in rows:
        print(f"| {name} | {measured} | {ratio} | {goal} |")


if __name__ == "__main__":
    main()
