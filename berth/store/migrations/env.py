"""Alembic environment: run with a connection handed in by ``Database.migrate``."""

from __future__ import annotations

from alembic import context

from berth.store import tables  # noqa: F401  (registers every table on Base.metadata)
from berth.store.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    url = context.config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
