"""The cluster repositories' tenancy: another project's rows are invisible, all_projects sees them.

Runs on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from berth import errors
from berth.store import cluster_templates, clusters, magnum_quotas
from berth.store.db import Database
from berth.store.scope import Scope
from berth.store.tables import ClusterQuotaRow, ClusterRow, ClusterTemplateRow

pytestmark = pytest.mark.asyncio

ALICE, BOB = Scope("alice"), Scope("bob")
ADMIN = Scope("admin", all_projects=True)
MINE = "00000000-0000-0000-0000-00000000000a"
THEIRS = "00000000-0000-0000-0000-00000000000b"


def _cluster(uuid: str, project: str, name: str) -> ClusterRow:
    return ClusterRow(
        uuid=uuid,
        project_id=project,
        user_id="u",
        name=name,
        cluster_template_id="t",
        driver="swarm",
        status="CREATE_COMPLETE",
    )


def _template(uuid: str, project: str, name: str, *, public: bool = False) -> ClusterTemplateRow:
    return ClusterTemplateRow(uuid=uuid, project_id=project, user_id="u", name=name, public=public)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        await database.migrate()
        async with database.transaction() as session:
            session.add_all(
                [
                    _cluster(MINE, "alice", "shared-name"),
                    _cluster(THEIRS, "bob", "shared-name"),
                    _template(MINE, "alice", "tpl"),
                    _template(THEIRS, "bob", "tpl-bob"),
                    ClusterQuotaRow(project_id="alice", resource="Cluster", hard_limit=3),
                    ClusterQuotaRow(project_id="bob", resource="Cluster", hard_limit=5),
                ]
            )
        yield database
    finally:
        await database.close()


async def test_another_projects_cluster_is_invisible(db: Database) -> None:
    async with db.read() as session:
        assert [r.uuid for r in await clusters.visible(session, ALICE)] == [MINE]
        assert (await clusters.get(session, ALICE, "shared-name")).uuid == MINE
        assert (await clusters.get(session, BOB, "shared-name")).uuid == THEIRS
        with pytest.raises(errors.ClusterNotFound, match=f"Cluster {THEIRS} could not be found"):
            await clusters.get(session, ALICE, THEIRS)
        with pytest.raises(errors.ClusterNotFound):
            await clusters.get(session, Scope(None), MINE)


async def test_all_projects_sees_every_cluster(db: Database) -> None:
    async with db.read() as session:
        assert [r.uuid for r in await clusters.visible(session, ADMIN)] == [MINE, THEIRS]
        assert (await clusters.get(session, ADMIN, THEIRS.upper())).project_id == "bob"
        with pytest.raises(errors.Conflict, match="Multiple clusters exist with same name"):
            await clusters.get(session, ADMIN, "shared-name")


async def test_cluster_counts_are_per_project(db: Database) -> None:
    async with db.read() as session:
        assert await clusters.count_in_project(session, "alice") == 1
        assert [r.uuid for r in await clusters.in_project(session, "bob")] == [THEIRS]
        assert len(await clusters.in_project(session, None)) == 2


async def test_private_templates_of_another_project_are_invisible(db: Database) -> None:
    async with db.read() as session:
        assert [r.name for r in await cluster_templates.visible(session, ALICE)] == ["tpl"]
        with pytest.raises(errors.ClusterTemplateNotFound):
            await cluster_templates.get(session, ALICE, "tpl-bob")
        assert (await cluster_templates.get(session, ADMIN, "tpl-bob")).uuid == THEIRS
        assert len(await cluster_templates.visible(session, ADMIN)) == 2


async def test_quotas_are_listed_per_project_unless_all_projects(db: Database) -> None:
    async with db.read() as session:
        assert [q.project_id for q in await magnum_quotas.visible(session, ALICE)] == ["alice"]
        assert [q.project_id for q in await magnum_quotas.visible(session, ADMIN)] == [
            "alice",
            "bob",
        ]
        assert await magnum_quotas.hard_limit(session, "bob", "Cluster") == 5
        assert await magnum_quotas.hard_limit(session, "carol", "Cluster") is None
