"""A container quota holds exactly when two berth-api processes share one database.

Each process counts a project's containers inside its create transaction; the
count is only exact when a concurrent create in the other process waits for
it. 20 creates at once, split over both processes, against a quota of 3: three
are accepted, seventeen get Zun's quota answer, and the database holds three.
No agent and no engine: the accepted containers stay unplaced, which is enough
(a stored container counts against the quota whether it was placed or not).
PostgreSQL is the scale-out case; SQLite shared by two processes (a second
server or an admin command beside the first) must hold the quota as well.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import sqlite3
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import PG_ADMIN_DSN
from tests.helpers import ZUN
from tests.live import live_api, live_token

pytestmark = [pytest.mark.slow]

ADMIN_PASSWORD = "quota-admin-pw"
MEMBER_PASSWORD = "quota-member-pw"
QUOTA = 3
CREATES = 20


def _member_project(base: str, admin: str) -> str:
    """A project ``quota-p`` with a member ``quota-u``; its id."""
    h = {"X-Auth-Token": admin}
    r = httpx.post(
        f"{base}/identity/v3/projects",
        headers=h,
        json={"project": {"name": "quota-p", "domain_id": "default"}},
    )
    assert r.status_code == 201, r.text
    pid = str(r.json()["project"]["id"])
    user = {"name": "quota-u", "domain_id": "default", "password": MEMBER_PASSWORD}
    r = httpx.post(
        f"{base}/identity/v3/users", headers=h, json={"user": {**user, "default_project_id": pid}}
    )
    assert r.status_code == 201, r.text
    uid = r.json()["user"]["id"]
    role = httpx.get(f"{base}/identity/v3/roles?name=member", headers=h).json()["roles"][0]
    r = httpx.put(f"{base}/identity/v3/projects/{pid}/users/{uid}/roles/{role['id']}", headers=h)
    assert r.status_code == 204, r.text
    return pid


def test_a_quota_of_three_holds_against_twenty_creates_through_two_processes(
    tmp_path: Path, blank_db_url: str
) -> None:
    """Both processes share one fresh database (``blank_db_url``: SQLite and PostgreSQL)."""
    database = blank_db_url
    env = {
        "BERTH_DATABASE_URL": database,
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BERTH_ALL_IN_ONE": "false",
        # The processes run this checkout's berth, not whichever one is installed.
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    with contextlib.ExitStack() as stack:
        # One after the other: the first migrates the schema.
        apis = [stack.enter_context(live_api(env, workdir=tmp_path / f"api-{i}")) for i in (1, 2)]
        bases = [api.base_url for api in apis]
        admin = live_token(bases[0], "admin", ADMIN_PASSWORD, "admin")
        pid = _member_project(bases[0], admin)
        r = httpx.put(
            f"{bases[1]}/container/v1/quotas/{pid}",
            json={"containers": QUOTA},
            headers={"X-Auth-Token": admin, **ZUN},
        )
        assert r.status_code == 200, r.text
        tokens = [live_token(base, "quota-u", MEMBER_PASSWORD, "quota-p") for base in bases]

        def create(i: int) -> httpx.Response:
            return httpx.post(
                f"{bases[i % 2]}/container/v1/containers",
                json={"image": "busybox", "name": f"q-{i}"},
                headers={"X-Auth-Token": tokens[i % 2], **ZUN},
                timeout=60,
            )

        with cf.ThreadPoolExecutor(max_workers=CREATES) as pool:
            answers = list(pool.map(create, range(CREATES)))

    codes = sorted(r.status_code for r in answers)
    assert codes == [202] * QUOTA + [403] * (CREATES - QUOTA), codes
    for r in answers:
        if r.status_code == 403:
            detail = r.json()["errors"][0]["detail"]
            assert detail.startswith("Quota exceeded for resources: containers (limit 3")
    assert _stored(database, pid) == QUOTA


def _stored(url: str, project_id: str) -> int:
    """How many containers of the project the database holds, read with a plain driver."""
    query = "SELECT count(*) FROM containers WHERE project_id = "
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as lite:
            (count,) = lite.execute(query + "?", (project_id,)).fetchone()
            return int(count)
    dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + url.rsplit("/", 1)[1]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query + "%s", (project_id,)).fetchone()
        assert row is not None
        return int(row[0])
