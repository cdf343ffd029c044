"""Every SQL statement of the service, one module per domain module.

- Statements are built once, at import, in SQLAlchemy Core over the tables
  (`Model.__table__`), so SQLAlchemy only looks up their compiled form per call.
- Functions are named for what they answer (`lock_order(id)`, `orders_visible_to(actor, …)`)
  and take the request's `AsyncSession`; they return frozen dataclass records (`records.py`
  of each module, built with `record_of`) or plain values, never identity-mapped ORM objects.
- Role scoping of a list is written once, in its entity's repository.
- They flush nothing and commit nothing: the request's transaction commits (`TxRoute`).
"""
