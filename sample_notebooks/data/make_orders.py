"""Regenerate data/orders.csv, the raw input of the restaurant pipeline.

Deterministic (fixed seed, fixed dates), so the committed CSV never changes:

    python data/make_orders.py            # writes data/orders.csv next to this script
    python data/make_orders.py --rows 500 --out /tmp/orders.csv

Every generated row is valid; ingest injects the corrupt rows (job parameter ``bad_rows``).
"""
from __future__ import annotations

import argparse
import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

FIELDS = ["order_id", "restaurant", "city", "item", "quantity", "unit_price", "ordered_at"]

# (restaurant, city) pairs: one chain appears in two cities so "per restaurant/city" matters.
RESTAURANTS = [
    ("Bella Napoli", "Lyon"),
    ("Bella Napoli", "Paris"),
    ("Sakura Sushi", "Paris"),
    ("Taco Loco", "Marseille"),
    ("The Green Bowl", "Lyon"),
    ("Burger Barn", "Lille"),
]

MENU = {
    "Bella Napoli": [("Margherita", 9.50), ("Quattro Formaggi", 12.00), ("Tiramisu", 6.50)],
    "Sakura Sushi": [("Salmon Nigiri", 7.80), ("Dragon Roll", 13.50), ("Miso Soup", 3.90)],
    "Taco Loco": [("Taco Al Pastor", 4.20), ("Burrito", 10.90), ("Nachos", 6.00)],
    "The Green Bowl": [("Buddha Bowl", 11.50), ("Falafel Wrap", 8.90), ("Smoothie", 5.20)],
    "Burger Barn": [("Classic Burger", 10.50), ("Fries", 3.50), ("Milkshake", 4.80)],
}

START = datetime(2024, 6, 3, 11, 0, 0)  # a Monday; orders span one week


def make_rows(n: int, seed: int = 42) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(1, n + 1):
        restaurant, city = rng.choice(RESTAURANTS)
        item, price = rng.choice(MENU[restaurant])
        ordered_at = START + timedelta(days=rng.randrange(7), minutes=rng.randrange(11 * 60))
        rows.append({
            "order_id": f"O-{i:04d}",
            "restaurant": restaurant,
            "city": city,
            "item": item,
            "quantity": str(rng.randint(1, 4)),
            "unit_price": f"{price:.2f}",
            "ordered_at": ordered_at.isoformat(),
        })
    return rows


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=here / "orders.csv")
    args = parser.parse_args(argv)
    rows = make_rows(args.rows, args.seed)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} orders to {args.out}")


if __name__ == "__main__":
    main()
