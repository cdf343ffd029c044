"""GMV, one definition for every module: paid minus refunded `amount_fen` (see
`app/db/repositories/gmv.py`, where the expression is built over the table's columns, so the
repositories' statements stay Core; it serves ORM queries just as well)."""

from __future__ import annotations

from app.db.repositories.gmv import gmv_sum

__all__ = ["gmv_sum"]
