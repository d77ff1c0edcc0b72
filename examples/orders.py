"""Customer orders: the documented half of the example project."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Order:
    """A customer's order of one item."""

    item: str
    unit_price: float
    count: int = 1

    def subtotal(self) -> float:
        """Return the price of the order: its unit price times its count."""
        return self.unit_price * self.count

    def cancel(self, count: int) -> None:
        """Remove count units from the order; raise ValueError if it has fewer."""
        if count > self.count:
            raise ValueError(f"cannot cancel {count} of {self.count} units")
        self.count -= count


def read_orders(path: str | Path, *, delimiter: str = ",") -> list[Order]:
    """Read orders from a CSV file with the columns item, unit_price and count."""
    orders = []
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file, delimiter=delimiter):
            orders.append(Order(row["item"], float(row["unit_price"]), int(row["count"])))
    return orders


def large_orders(orders: list[Order], threshold: int = 10) -> Iterator[Order]:
    """Yield the orders of at least threshold units."""
    for order in orders:
        if order.count >= threshold:
            yield order


def orders_value(orders: list[Order]) -> float:
    """Return the total price of all orders."""
    return sum(order.subtotal() for order in orders)


def format_amount(value: float, currency: str = "USD") -> str:
    """Format an amount of money with two decimals and its currency."""
    return f"{value:,.2f} {currency}"
