"""Two berth-api processes over one PostgreSQL database, real agents on real engines.

Both APIs run the worker loops (``BERTH_ALL_IN_ONE=false``); each of the two
agents long-polls a different API, so a create through one API reaches an
agent through PostgreSQL NOTIFY. Concurrent creates through both APIs, more
than the hosts hold: no double placement (each host's claims are exactly the
sum of its containers, within capacity), no lost container (every 202 is
listed), every placed container Running on its host's engine and nowhere
else, and the rest refused with the reason.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import pg_database
from tests.functional.docker_engine import TEST_IMAGE, engine_or_skip, ensure_test_image
from tests.functional.hosts import ADMIN_PASSWORD, Cloud, Dockerd, docker_hosts
from tests.live import LiveAgent, LiveApi, berth_agent, live_api

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.postgres]

AGENT_PASSWORD = "so-agent-pw"
HOSTS = ["so-1", "so-2"]
CREATES = 20
CPU = 0.25  # with an allocation ratio of 1, a 2-CPU host takes 8


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        yield url


@contextlib.contextmanager
def two_apis_two_agents(
    tmp_path: Path, pg_url: str
) -> Iterator[tuple[list[LiveApi], dict[str, Dockerd], dict[str, LiveAgent]]]:
    engine = engine_or_skip()
    ensure_test_image(engine)
    env = {
        "BERTH_DATABASE_URL": pg_url,
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BERTH_AGENT_PASSWORD": AGENT_PASSWORD,
        "BERTH_ALL_IN_ONE": "false",
        "BERTH_CPU_ALLOCATION_RATIO": "1.0",
    }
    try:
        with contextlib.ExitStack() as stack:
            engines = stack.enter_context(docker_hosts(HOSTS, engine))
            # One after the other: the first migrates the schema.
            apis = [
                stack.enter_context(live_api(env, workdir=tmp_path / f"api-{i}")) for i in (1, 2)
            ]
            agents = {
                host: stack.enter_context(
                    berth_agent(
                        api.base_url,  # so-1 long-polls the first API, so-2 the second
                        host=host,
                        password=AGENT_PASSWORD,
                        workdir=tmp_path / host,
                        settings_env={
                            "BERTH_DOCKER_URL": engines[host].url,
                            "BERTH_RECONCILE_INTERVAL": "2",
                        },
                        wait=False,
                    )
                )
                for host, api in zip(HOSTS, apis, strict=True)
            }
            for agent in agents.values():
                agent.wait_ready()
            yield apis, engines, agents
    finally:
        engine.close()


def test_concurrent_creates_through_two_apis(tmp_path: Path, pg_url: str) -> None:
    with two_apis_two_agents(tmp_path, pg_url) as (apis, engines, agents):
        clouds = [Cloud(api, agents, engines, dict(api.env)) for api in apis]
        for c in clouds:
            c.login()
        clouds[0].wait_up(*HOSTS)

        def create(i: int) -> httpx.Response:
            c = clouds[i % 2]
            body = {"image": TEST_IMAGE, "command": ["sleep", "3600"], "memory": 32, "cpu": CPU}
            return c.call("POST", "/containers", params={"run": "true"}, json=body)

        with cf.ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(create, range(CREATES)))
        assert all(r.status_code == 202 for r in answers), [r.text for r in answers]
        created = [r.json() for r in answers]
        placed = [x for x in created if x["host"]]
        refused = [x for x in created if not x["host"]]
        assert len(placed) == 16 and len(refused) == 4, [x["host"] for x in created]
        assert all("not enough CPU" in x["status_reason"] for x in refused)

        for c in clouds:  # no lost container, whichever API is asked
            assert set(c.containers()) == {x["uuid"] for x in created}
        shown = clouds[1].containers()
        claims = {h["hostname"]: h for h in clouds[0].call("GET", "/hosts").json()["hosts"]}
        for host in HOSTS:
            mine = [shown[x["uuid"]] for x in placed if shown[x["uuid"]]["host"] == host]
            h = claims[host]
            assert h["total_containers"] == len(mine) == 8, (host, h, len(mine))
            assert h["mem_used"] == 32 * len(mine)
            assert round(h["cpu_used"], 6) == round(CPU * len(mine), 6) <= h["cpus"]

        clouds[0].wait_status([x["uuid"] for x in placed], "Running", timeout=60)
        for x in placed:
            assert clouds[0].runs_on(x["uuid"]) == [shown[x["uuid"]]["host"]]
        clouds[1].delete_all()
        assert _nothing_left(engines)


def _nothing_left(engines: dict[str, Dockerd]) -> bool:
    return not any(e.berth_containers() for e in engines.values())
