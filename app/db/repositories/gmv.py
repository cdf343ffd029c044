"""GMV in Core, one definition for every statement: paid minus refunded `amount_fen`.

An upstream order is one row whose status is its latest fact: pushed `paid`, it adds its amount;
pushed again `refunded`, its amount is taken back out. So an order contributes its amount while
paid and nothing once refunded (never a negative amount: that would take the refund off twice).
Built over the table's columns, so the statements using it stay Core (ORM attributes would make
them ORM-enabled)."""

from __future__ import annotations

from sqlalchemy import case, func

from app.db.base import table_of
from app.db.models.facts import SalesOrder

sales_orders = table_of(SalesOrder)


def gmv_sum():
    """`SUM(...)` of GMV over the selected `sales_orders` rows (0 when none)."""
    return func.coalesce(func.sum(case((sales_orders.c.status == "paid", sales_orders.c.amount_fen), else_=0)), 0)
