"""Gold layer of the restaurant pipeline (a spark_python_task: a plain Python script).

Aggregates the silver orders into revenue per restaurant and city:
``<data-dir>/<run-date>/gold/revenue_by_restaurant.csv`` (orders, items, revenue; highest revenue first).

Task values: reads ``row_count`` set by the ``ingest`` notebook (notebook -> script) and sets ``revenue``
(the total, a float) for ``validate``. In a job, the arguments come from the task's ``parameters``
(``{{job.parameters.data_dir}}`` ...). On its own, run it from this folder after ingest and silver:

    python gold.py --data-dir warehouse --run-date 2024-06-03
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from datetime import date, datetime, timezone
from pathlib import Path

from nbjobs import dbutils


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gold layer: revenue per restaurant and city.")
    parser.add_argument("--data-dir", default="warehouse", help="output folder, relative to the working directory")
    parser.add_argument("--run-date", default="", help="YYYY-MM-DD; empty means today (UTC)")
    parser.add_argument("--fail-at", default="", help="task key that should fail deliberately")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_date = args.run_date or datetime.now(timezone.utc).date().isoformat()
    date.fromisoformat(run_date)  # must be YYYY-MM-DD: it names the run folder
    run_folder = Path(args.data_dir) / run_date

    silver_path = run_folder / "silver" / "orders.csv"
    if not silver_path.exists():
        print(f"gold: {silver_path} not found (run ingest and silver first, from the sample_notebooks folder)",
              file=sys.stderr)
        return 1
    with open(silver_path, newline="", encoding="utf-8") as f:
        silver = list(csv.DictReader(f))

    totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: {"orders": 0, "items": 0, "revenue": 0.0})
    for row in silver:
        agg = totals[(row["restaurant"], row["city"])]
        agg["orders"] += 1
        agg["items"] += int(row["quantity"])
        agg["revenue"] += float(row["amount"])
    table = sorted(
        ({"restaurant": r, "city": c, "orders": a["orders"], "items": a["items"], "revenue": round(a["revenue"], 2)}
         for (r, c), a in totals.items()),
        key=lambda t: (-t["revenue"], t["restaurant"], t["city"]),
    )
    revenue = round(sum(t["revenue"] for t in table), 2)

    gold_path = run_folder / "gold" / "revenue_by_restaurant.csv"
    gold_path.parent.mkdir(parents=True, exist_ok=True)
    with open(gold_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["restaurant", "city", "orders", "items", "revenue"], lineterminator="\n")
        writer.writeheader()
        for t in table:
            writer.writerow({**t, "revenue": f"{t['revenue']:.2f}"})

    # A value set by the ingest notebook; outside a job the debugValue (-1) comes back.
    row_count = int(dbutils.jobs.taskValues.get(taskKey="ingest", key="row_count", debugValue=-1))

    print(f"gold for {run_date}: {len(silver)} silver orders -> {len(table)} restaurant/city rows")
    for t in table:
        print(f"  {t['restaurant']:<16} {t['city']:<10} {t['orders']:>4} orders {t['items']:>4} items {t['revenue']:>9.2f}")
    print(f"  {'total':<27} {sum(t['orders'] for t in table):>4} orders {'':>10} {revenue:>9.2f}")
    if row_count >= 0:
        print(f"ingest reported {row_count} bronze rows; {row_count - len(silver)} did not reach silver")
    else:
        print("not running in a job: no row_count task value from ingest")
    print(f"wrote {gold_path}")

    # Fails after the gold file was written: no rollback, but no task value either.
    if args.fail_at == "gold":
        raise RuntimeError("deliberate failure at gold (fail_at=gold)")

    dbutils.jobs.taskValues.set("revenue", revenue)
    return 0


if __name__ == "__main__":
    sys.exit(main())
