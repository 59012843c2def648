"""Poison rows: a cluster job that would eat the process, or that killed its worker before,
ends FAILED with a reason while the API keeps answering — never a crash loop.

The rows are put straight into the database (as an older version or a hand edit
would leave them) and the real app starts with its worker and the installed
swarm-mode driver.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from berth.api.app import create_app
from berth.config import Settings
from berth.store.base import new_uuid, utcnow
from berth.store.db import Database
from berth.store.tables import ClusterRow
from tests.conftest import ADMIN_PASSWORD, issue_token

V = "/container-infra/v1"


def _row(name: str, **attrs: Any) -> ClusterRow:
    return ClusterRow(
        uuid=new_uuid(),
        project_id="poisoned",
        user_id="someone",
        name=name,
        cluster_template_id=new_uuid(),
        driver="swarm-mode",
        status="CREATE_IN_PROGRESS",
        status_reason="Cluster create requested.",
        attrs={"master_count": 1, "create_timeout": 60, **attrs},
        created_at=utcnow(),
    )


async def test_poison_rows_end_failed_while_the_api_keeps_answering(settings: Settings) -> None:
    db = Database(settings.effective_database_url)
    try:
        async with db.transaction() as session:
            # 10**12 nodes: planning it used to freeze the event loop and grow to OOM.
            session.add(_row("huge", node_count=10**12))
            # Three workers were killed while creating this one (each start is
            # recorded before the job runs, and only its end clears it).
            job = {"status": "CREATE_IN_PROGRESS", "attempts": settings.cluster_job_attempts}
            session.add(_row("crasher", node_count=1, job=job))
    finally:
        await db.close()

    app = create_app(settings, run_workers=True)
    longest, done = 0.0, False

    async def ticker() -> None:
        # The loop's own CPU time between two turns: a job that held it shows; the
        # machine giving the CPU to other processes (a busy CI) does not.
        nonlocal longest
        last = time.thread_time()
        while not done:
            await asyncio.sleep(0.01)
            now = time.thread_time()
            longest, last = max(longest, now - last), now

    async with app.router.lifespan_context(app):
        ticking = asyncio.create_task(ticker())  # the worker's first pass starts now
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            token = await issue_token(c, "admin", ADMIN_PASSWORD, "admin")
            h = {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}
            give_up = time.monotonic() + 30
            while True:
                r = await asyncio.wait_for(c.get(f"{V}/clusters", headers=h), timeout=10)
                assert r.status_code == 200, r.text
                assert longest < 1, f"the event loop was held {longest:.1f} s by a cluster job"
                statuses = {x["name"]: x["status"] for x in r.json()["clusters"]}
                if set(statuses.values()) == {"CREATE_FAILED"}:
                    break
                assert time.monotonic() < give_up, f"clusters still not failed: {statuses}"
                await asyncio.sleep(0.2)
            huge = (await c.get(f"{V}/clusters/huge", headers=h)).json()
            crasher = (await c.get(f"{V}/clusters/crasher", headers=h)).json()
        done = True
        await ticking
    assert "1000000000001 nodes" in huge["status_reason"], huge["status_reason"]
    assert "max_nodes_per_cluster" in huge["status_reason"]
    assert f"started {settings.cluster_job_attempts} times" in crasher["status_reason"]
    assert "delete it" in crasher["status_reason"]
    assert not app.state.berth.saw_server_error
