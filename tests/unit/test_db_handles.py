"""A database handle lives as long as its owner holds it, not as long as the process."""

from __future__ import annotations

import gc
import weakref

from berth.store.db import Database, Writes
from berth.store.tables.quotas import QuotaRow


async def test_a_closed_handle_with_write_watchers_is_freed_with_its_engine(
    db_url: str,
) -> None:
    db = Database(db_url)
    seen: list[Writes] = []
    db.watch_writes(seen.append)
    async with db.transaction() as s:
        s.add(QuotaRow(project_id="p", resource="containers", hard_limit=3))
    assert seen and any(w.startswith("quotas") for w in seen[0]), seen  # watchers still run
    await db.close()
    handle, engine = weakref.ref(db), weakref.ref(db.engine)
    del db, s
    gc.collect()
    # Before: the commit listener, a bound method in SQLAlchemy's per-class registry,
    # kept every handle (and its engine and statement cache) for the process's life.
    assert handle() is None and engine() is None
