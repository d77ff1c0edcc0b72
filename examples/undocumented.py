"""A small inventory module whose functions have no docstrings yet.

Try: codemt docstring examples/undocumented.py
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0

    def total(self) -> float:
        return self.price * self.quantity

    def restock(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError(f"cannot restock {amount} items")
        self.quantity += amount


def read_items(path: str | Path, *, delimiter: str = ",") -> list[Item]:
    items = []
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file, delimiter=delimiter):
            # Quantities are optional in older exports.
            items.append(Item(row["name"], float(row["price"]), int(row.get("quantity") or 0)))
    return items


def low_stock(items: list[Item], threshold: int = 5) -> Iterator[Item]:
    for item in items:
        if item.quantity < threshold:
            yield item


def inventory_value(items: list[Item]) -> float: return sum(item.total() for item in items)


def format_price(value, currency="EUR"):
    return f"{value:,.2f} {currency}"
