"""A list of ids as one statement parameter.

`column IN (…)` is an expanding parameter: SQLAlchemy renders the SQL per call, so the
statement cannot take the PostgreSQL fast lane. On PostgreSQL `column = ANY(:ids)` takes the
list as one array parameter (one SQL text whatever its length); SQLite has no arrays and keeps
the expanding IN. A repository builds its statement once per dialect from `in_list`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, String, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY

DIALECTS = ("postgresql", "sqlite")


def in_list(column: ColumnElement[Any], name: str, dialect: str) -> Any:
    """`column` is one of the list parameter `name` (strings)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(String)))
    return column.in_(bindparam(name, expanding=True))


def per_dialect(build: Callable[[str], Any]) -> dict[str, Any]:
    """`build(dialect)` for each dialect: the statement's variants, keyed by dialect name."""
    return {dialect: build(dialect) for dialect in DIALECTS}
