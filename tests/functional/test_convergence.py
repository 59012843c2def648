"""Crash convergence on the real engine: ``kill -9`` a Berth process mid-operation, restart it.

A live berth-api (no embedded agent) and a standalone berth-agent for a host
of this test alone. Containers are created, stopped and deleted through the
HTTP API while one of the two processes is SIGKILLed; after the restart every
container must reach what the user asked for, with exactly one runtime
container per Berth UUID, nothing stuck in ``Creating`` and nothing left
behind in Docker. On failure the processes' logs are printed (stderr).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
import uuid as uuidlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.functional.docker_engine import (
    TEST_IMAGE,
    engine_or_skip,
    ensure_test_image,
    remove_owned,
)
from tests.functional.engines import wait_until
from tests.helpers import ZUN
from tests.live import LiveAgent, LiveApi, berth_agent, live_api, live_token

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ADMIN_PASSWORD = "conv-admin-pw"
AGENT_PASSWORD = "conv-agent-pw"
N = 10
CONVERGE_SECONDS = 45.0
OUTAGE_SECONDS = 5.0
LABEL_UUID, LABEL_OWNER = "berth.uuid", "berth.owner"


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    api = engine_or_skip()
    ensure_test_image(api)
    yield api
    api.close()


@dataclass
class Cloud:
    """A live API and agent for host ``agent.host``, driven as the admin."""

    api: LiveApi
    agent: LiveAgent
    engine: Any
    token: str = ""

    @property
    def host(self) -> str:
        return self.agent.host

    def login(self) -> None:
        self.token = live_token(self.api.base_url, "admin", ADMIN_PASSWORD, "admin")

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**ZUN, "X-Auth-Token": self.token}
        r = httpx.request(
            method, f"{self.api.base_url}/container/v1{path}", headers=headers, timeout=30, **kw
        )
        assert r.status_code < 500, f"{method} {path} answered {r.status_code}: {r.text}"
        return r

    def create(self, name: str) -> httpx.Response:
        body = {
            "name": name,
            "image": TEST_IMAGE,
            "command": ["sleep", "3600"],
            "memory": 32,
            "cpu": 0.1,
        }
        return self.call("POST", "/containers", params={"run": "true"}, json=body)

    def containers(self) -> dict[str, dict[str, Any]]:
        r = self.call("GET", "/containers", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return {c["uuid"]: c for c in r.json()["containers"]}

    def runtime(self) -> dict[str, list[dict[str, Any]]]:
        """The engine's containers of this host, by Berth UUID (label)."""
        found = self.engine.containers(all=True, filters={"label": f"{LABEL_OWNER}={self.host}"})
        by_uuid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in found:
            by_uuid[c["Labels"].get(LABEL_UUID, "?")].append(c)
        return dict(by_uuid)

    def wait_host_up(self) -> None:
        def up() -> bool:
            r = self.call("GET", "/services")
            return any(s["host"] == self.host and s["state"] == "up" for s in r.json()["services"])

        wait_until(up, 30, f"the agent of {self.host} to register")

    def host_usage(self) -> tuple[int, int, float, int]:
        """This host's claims: containers, MiB, CPUs and disk in use."""
        r = self.call("GET", "/hosts")
        assert r.status_code == 200, r.text
        (h,) = [h for h in r.json()["hosts"] if h["hostname"] == self.host]
        return h["total_containers"], h["mem_used"], round(h["cpu_used"], 3), h["disk_used"]

    def open_actions(self, uid: str) -> list[dict[str, Any]]:
        r = self.call("GET", f"/containers/{uid}/container_actions")
        assert r.status_code == 200, r.text
        return [a for a in r.json()["containerActions"] if a["finish_time"] is None]

    def delete_all(self) -> None:
        for uid in self.containers():
            r = self.call("DELETE", f"/containers/{uid}", params={"force": "true", "stop": "true"})
            assert r.status_code in (204, 404), r.text
        wait_until(lambda: not self.containers(), CONVERGE_SECONDS, "every container deleted")
        wait_until(lambda: not self.runtime(), 10, "no runtime container left")
        assert self.host_usage() == (0, 0, 0.0, 0), "claims outlived their containers"


@contextlib.contextmanager
def cloud_for(engine: Any, tmp_path: Path) -> Iterator[Cloud]:
    """A fresh API and agent; on success everything is deleted through the API."""
    host = f"conv-{uuidlib.uuid4().hex[:10]}"
    env = {
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BERTH_AGENT_PASSWORD": AGENT_PASSWORD,
        "BERTH_ALL_IN_ONE": "false",
    }
    agent_env = {"BERTH_RECONCILE_INTERVAL": "2", "BERTH_HEARTBEAT_INTERVAL": "1"}
    try:
        with (
            live_api(env, workdir=tmp_path / "api") as api,
            berth_agent(
                api.base_url,
                host=host,
                password=AGENT_PASSWORD,
                workdir=tmp_path / "agent",
                settings_env=agent_env,
            ) as agent,
        ):
            cloud = Cloud(api, agent, engine)
            cloud.login()
            cloud.wait_host_up()
            yield cloud
            cloud.delete_all()
    finally:
        remove_owned(engine, host)


def assert_converged_running(cloud: Cloud, expected: set[str]) -> dict[str, dict[str, Any]]:
    """Every container Running with exactly one running runtime container; nothing else."""

    def settled() -> dict[str, dict[str, Any]] | None:
        shown = cloud.containers()
        return shown if shown and all(c["status"] == "Running" for c in shown.values()) else None

    try:
        shown = wait_until(settled, CONVERGE_SECONDS, "every container to be Running")
    except AssertionError:
        states = {u: (c["status"], c["status_reason"]) for u, c in cloud.containers().items()}
        raise AssertionError(f"not all Running: {states}") from None
    assert expected <= shown.keys(), f"accepted creates went missing: {expected - shown.keys()}"

    def no_garbage() -> dict[str, list[dict[str, Any]]] | None:
        runtime = cloud.runtime()
        return runtime if runtime.keys() <= shown.keys() else None

    runtime = wait_until(no_garbage, 15, "garbage runtime containers to be removed")
    assert runtime.keys() == shown.keys(), f"runtime vs API: {runtime.keys() ^ shown.keys()}"
    for uid, found in runtime.items():
        assert len(found) == 1, f"{uid} has {len(found)} runtime containers: {found}"
        assert found[0]["State"] == "running", found[0]
        assert found[0]["Names"] == [f"/berth-{uid}"], found[0]["Names"]
    for uid, c in shown.items():
        assert (c["task_state"], c["status_reason"]) == (None, None), c
        assert not cloud.open_actions(uid), f"{uid} has unfinished actions"
    count, memory, cpu, _ = cloud.host_usage()
    assert (count, memory, cpu) == (len(shown), 32 * len(shown), round(0.1 * len(shown), 3))
    return shown


def create_concurrently(cloud: Cloud, names: list[str]) -> list[cf.Future[httpx.Response]]:
    pool = cf.ThreadPoolExecutor(len(names), thread_name_prefix="create")
    futures = [pool.submit(cloud.create, name) for name in names]
    pool.shutdown(wait=False)
    return futures


def _states(cloud: Cloud) -> dict[str, list[str]]:
    return {u: [c["State"] for c in cs] for u, cs in cloud.runtime().items()}


def _running(cloud: Cloud) -> int:
    return sum(c["status"] == "Running" for c in cloud.containers().values())


def _accepted(futures: list[cf.Future[httpx.Response]]) -> tuple[set[str], int]:
    """UUIDs of the creates answered 202, and how many got no answer at all."""
    accepted, lost = set(), 0
    for future in futures:
        try:
            r = future.result(timeout=30)
        except httpx.TransportError as exc:
            lost += 1
            print(f"a create got no answer: {exc!r}")
            continue
        assert r.status_code == 202, r.text
        accepted.add(r.json()["uuid"])
    return accepted, lost


@pytest.mark.parametrize("kill_when", ["first-created", "first-running"])
def test_agent_killed_while_creating_ten_converges(
    engine: Any, tmp_path: Path, kill_when: str
) -> None:
    """kill -9 of the agent while 10 containers are being created, then restart: all 10
    end Running with exactly one runtime container each.

    ``first-created``: as soon as the engine shows the first container of this
    host (the batch is then being created). ``first-running``: as soon as one
    runs (some are running, some created, some not there yet); the restarted
    agent is then killed once more as soon as the API shows one Running, so
    recovery itself is interrupted too.
    """
    with cloud_for(engine, tmp_path) as cloud:
        futures = create_concurrently(cloud, [f"conv-{i}" for i in range(N)])
        if kill_when == "first-created":
            wait_until(cloud.runtime, 30, "the first runtime container", poll=0.01)
        else:
            wait_until(
                lambda: any("running" in s for s in _states(cloud).values()),
                30,
                "the first running runtime container",
                poll=0.01,
            )
        cloud.agent.kill()
        at_kill = _states(cloud)
        accepted, lost = _accepted(futures)
        assert len(accepted) == N and not lost
        print(f"at the kill the engine had {at_kill}")
        assert len(at_kill) < N or any(s != ["running"] for s in at_kill.values()), (
            "the kill came too late to interrupt anything"
        )

        if kill_when == "first-running":
            before = _running(cloud)
            cloud.agent.start()
            wait_until(
                lambda: _running(cloud) > before, CONVERGE_SECONDS, "the restarted agent to report"
            )
            cloud.agent.kill()
            print(f"at the second kill the engine had {_states(cloud)}")
        cloud.agent.start()
        final = assert_converged_running(cloud, accepted)
        assert final.keys() == accepted


@pytest.mark.parametrize("kill_when", ["first-answer", "first-runtime"])
def test_api_killed_while_creating_ten_converges(
    engine: Any, tmp_path: Path, kill_when: str
) -> None:
    """kill -9 of berth-api while 10 creates are in flight, restart it on the same data:
    every container that exists ends Running with exactly one runtime container, and
    the agent (never restarted) reconnects by itself.

    ``first-answer``: as soon as one create is answered (the others are in the
    API), restarted at once. ``first-runtime``: as soon as the agent created the
    first container (its reports of the batch then meet a dead API), restarted
    after an outage of a few seconds, as a supervisor would.
    """
    with cloud_for(engine, tmp_path) as cloud:
        agent_pid = cloud.agent.pid
        futures = create_concurrently(cloud, [f"conv-{i}" for i in range(N)])
        if kill_when == "first-answer":
            cf.wait(futures, timeout=30, return_when=cf.FIRST_COMPLETED)
        else:
            wait_until(cloud.runtime, 30, "the first runtime container", poll=0.01)
        cloud.api.kill()
        at_kill = _states(cloud)
        accepted, lost = _accepted(futures)
        print(f"{len(accepted)} creates accepted, {lost} got no answer; engine had {at_kill}")
        assert accepted, "no create was answered before the kill"

        if kill_when == "first-runtime":
            time.sleep(OUTAGE_SECONDS)
        cloud.api.start()
        ready = time.monotonic()
        print(f"after the restart the API has {len(cloud.containers())} containers")
        shown = assert_converged_running(cloud, accepted)
        print(f"converged {time.monotonic() - ready:.1f}s after the API was back")
        assert not [c for c in shown.values() if c["status"] == "Creating"]
        assert cloud.agent.alive and cloud.agent.pid == agent_pid, "the agent was restarted"


def _wait_engine_event(cloud: Cloud, container_id: str, since: float, signal: str) -> None:
    """Until the engine logged a ``kill`` with ``signal`` for ``container_id`` after ``since``."""

    def seen() -> bool:
        events = cloud.engine.events(
            since=since,
            until=time.time(),
            filters={"container": container_id, "event": "kill"},
            decode=True,
        )
        return any(e.get("Actor", {}).get("Attributes", {}).get("signal") == signal for e in events)

    wait_until(seen, 20, f"the engine to send signal {signal} to {container_id}")


def test_agent_killed_while_stopping_and_deleting_converges(engine: Any, tmp_path: Path) -> None:
    """Restarting the agent while containers are being stopped and deleted converges:
    stop → Stopped, delete → gone from the API and the engine, nothing left behind.

    ``sleep`` as PID 1 ignores SIGTERM, so a stop with a 5 s timeout keeps the
    agent in the middle of it for 5 s: the agent is killed there, with one
    container being stopped and one being deleted (asked while its stop ran,
    so its removal waits behind the stop). Two more are stopped and deleted
    while no agent runs at all.
    """
    with cloud_for(engine, tmp_path) as cloud:
        uids = {}
        for name in ("stopping", "deleting", "deleted-while-down", "stopped-while-down"):
            r = cloud.create(name)
            assert r.status_code == 202, r.text
            uids[name] = r.json()["uuid"]
        assert_converged_running(cloud, set(uids.values()))
        runtime_ids = {name: cloud.runtime()[uids[name]][0]["Id"] for name in uids}

        since = time.time() - 1
        for name in ("stopping", "deleting"):
            r = cloud.call("POST", f"/containers/{uids[name]}/stop", params={"timeout": 5})
            assert r.status_code == 202, r.text
        r = cloud.call("DELETE", f"/containers/{uids['deleting']}", params={"stop": "true"})
        assert r.status_code == 204, r.text
        for name in ("stopping", "deleting"):
            _wait_engine_event(cloud, runtime_ids[name], since, "15")
        cloud.agent.kill()
        shown = cloud.containers()
        assert shown[uids["stopping"]]["status"] != "Stopped"
        assert shown[uids["deleting"]]["status"] == "Deleting"
        assert uids["deleting"] in cloud.runtime(), "the kill came too late"

        r = cloud.call(
            "DELETE", f"/containers/{uids['deleted-while-down']}", params={"stop": "true"}
        )
        assert r.status_code == 204, r.text
        # (timeout 1: PID 1 ignores TERM, and this stop is about converging, not its timeout;
        # the default 10 s was waited out in full after the restart)
        r = cloud.call(
            "POST", f"/containers/{uids['stopped-while-down']}/stop", params={"timeout": 1}
        )
        assert r.status_code == 202, r.text

        cloud.agent.start()
        kept = {uids["stopping"], uids["stopped-while-down"]}

        def settled() -> bool:
            shown = cloud.containers()
            return shown.keys() == kept and all(c["status"] == "Stopped" for c in shown.values())

        try:
            wait_until(settled, CONVERGE_SECONDS, "stops and deletes to converge")
        except AssertionError:
            states = {u: (c["status"], c["status_reason"]) for u, c in cloud.containers().items()}
            raise AssertionError(f"did not converge: {states} (uuids: {uids})") from None

        def only_kept() -> dict[str, list[dict[str, Any]]] | None:
            found = cloud.runtime()
            return found if found.keys() == kept else None

        runtime = wait_until(only_kept, 10, "the deleted containers' runtime containers to go")
        for found in runtime.values():
            assert len(found) == 1 and found[0]["State"] == "exited", found
        for name in ("deleting", "deleted-while-down"):
            assert cloud.call("GET", f"/containers/{uids[name]}").status_code == 404
        for uid, c in cloud.containers().items():
            assert (c["task_state"], c["status_reason"]) == (None, None), c
            assert not cloud.open_actions(uid), f"{uid} has unfinished actions"
        assert cloud.host_usage() == (2, 64, 0.2, 0)
