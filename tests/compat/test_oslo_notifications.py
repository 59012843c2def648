"""Berth's CADF notifications read by the real oslo.messaging listener, as Ceilometer would.

A live berth-api relays its cluster notifications to the real RabbitMQ broker
(``BERTH_NOTIFICATION_URL``, a fresh exchange and topic per test). The consumer is
``oslo_messaging.get_notification_listener`` with an ``info``/``error`` endpoint, run in
its own process (tests/compat/oslo_listener.py) with the interpreter named by
``BERTH_TEST_OSLO_PYTHON`` (default: this one; the ``test`` extra installs
oslo.messaging). Clusters are created and deleted through the API with the fake
cluster driver of the live tests (tests/e2e/fake_cluster_driver.py: steps, no nodes).
The listener must get each notification with its event type, publisher, priority and
CADF payload; and notifications sent before any listener ran wait for it in the
default queue, as oslo.messaging's own notifier leaves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.exceptions
import httpx
import pytest

from tests.e2e import fake_cluster_driver
from tests.live import live_server, live_token

pytestmark = [pytest.mark.compat]

AMQP_URL = os.environ.get("BERTH_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
# The same broker as oslo.messaging names it (its ``amqp://`` is the AMQP 1.0 driver).
TRANSPORT_URL = "rabbit://" + AMQP_URL.split("://", 1)[1]
LISTENER = Path(__file__).with_name("oslo_listener.py")
PASSWORD = "oslo-notify-admin-pw"
MAG = {"OpenStack-API-Version": "container-infra latest"}
V = "/container-infra/v1"
CADF_EVENT = "http://schemas.dmtf.org/cloud/audit/1.0/event"
WAIT = 60.0  # seconds for a cluster step or a notification on a loaded machine


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def oslo_python() -> str:
    """An interpreter that imports oslo.messaging (the ``test`` extra installs it)."""
    python = os.environ.get("BERTH_TEST_OSLO_PYTHON", sys.executable)
    probe = subprocess.run(
        [python, "-W", "ignore", "-c", "import oslo_messaging"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        _skip_or_fail(f"oslo.messaging is not importable by {python}: {probe.stderr[-500:]}")
    return python


async def _broker(action: Callable[[aio_pika.abc.AbstractChannel], Any]) -> Any:
    connection = await aio_pika.connect_robust(AMQP_URL, timeout=5)
    try:
        channel = await connection.channel()
        return await action(channel)
    finally:
        await asyncio.wait_for(connection.close(), 5)


def _waiting(name: str) -> int:
    """How many messages wait in the queue ``name``; the test fails if there is no such queue."""

    async def count(channel: aio_pika.abc.AbstractChannel) -> int:
        declared = await channel.declare_queue(name, passive=True)
        return int(declared.declaration_result.message_count or 0)

    try:
        result: int = asyncio.run(_broker(count))
    except (aio_pika.exceptions.ChannelNotFoundEntity, asyncio.CancelledError) as exc:
        # (aio-pika reports the broker's NOT_FOUND to a passive declaration either way)
        raise AssertionError(f"no queue {name} on the broker: {exc}") from None
    return result


def _forget(exchange: str, topic: str) -> None:
    """Delete what the test made on the broker (its queues and exchange)."""

    async def delete(channel: aio_pika.abc.AbstractChannel) -> None:
        for priority in ("info", "error"):
            await channel.queue_delete(f"{topic}.{priority}")
        await channel.exchange_delete(exchange)

    asyncio.run(_broker(delete))


@dataclass
class Berth:
    url: str
    token: str
    exchange: str
    topic: str

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.token, **MAG}
        return httpx.request(method, f"{self.url}{V}{path}", headers=headers, timeout=30, **kw)

    def create(self, name: str, **labels: str) -> str:
        body = {"name": name, "cluster_template_id": "oslo-tpl", "node_count": 1}
        if labels:
            body["labels"] = {"e2e_step_seconds": "0.2", **labels}
        r = self.api("POST", "/clusters", json=body)
        assert r.status_code == 202, r.text
        uuid_: str = r.json()["uuid"]
        return uuid_

    def wait_status(self, cluster: str, *statuses: str) -> None:
        deadline = time.monotonic() + WAIT
        status = "?"
        while time.monotonic() < deadline:
            r = self.api("GET", f"/clusters/{cluster}")
            if r.status_code == 404 and "gone" in statuses:
                return
            status = r.json().get("status", "?") if r.status_code == 200 else str(r.status_code)
            if status in statuses:
                return
            time.sleep(0.3)
        raise AssertionError(f"cluster {cluster} is {status}, not {statuses}, after {WAIT}s")


@pytest.fixture
def berth(tmp_path: Path) -> Iterator[Berth]:
    """A live berth-api relaying notifications to a fresh exchange and topic of the broker."""
    try:
        asyncio.run(_broker(lambda channel: asyncio.sleep(0)))
    except Exception as exc:  # pragma: no cover - depends on the machine
        _skip_or_fail(f"RabbitMQ not reachable at {AMQP_URL}: {exc}")
    tag = uuid.uuid4().hex[:8]
    exchange, topic = f"magnum-oslo-{tag}", f"notifications-oslo-{tag}"
    env = {
        "BERTH_DATA_DIR": str(tmp_path / "data"),
        "BERTH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'berth.db'}",
        "BERTH_ADMIN_PASSWORD": PASSWORD,
        "BERTH_NOTIFICATION_URL": TRANSPORT_URL,  # as Magnum's transport_url names it
        "BERTH_NOTIFICATION_EXCHANGE": exchange,
        "BERTH_NOTIFICATION_TOPIC": topic,
        **fake_cluster_driver.install(tmp_path / "drivers"),
    }
    try:
        with live_server(env) as url:
            token = live_token(url, "admin", PASSWORD, "admin")
            template = {
                "name": "oslo-tpl",
                "coe": "swarm-mode",
                "image_id": "berth-test/busybox:latest",
                "driver": fake_cluster_driver.NAME,
                "labels": {"e2e_step_seconds": "0.2"},
            }
            r = httpx.post(
                f"{url}{V}/clustertemplates", json=template, headers={"X-Auth-Token": token}
            )
            assert r.status_code == 201, r.text
            yield Berth(url, token, exchange, topic)
    finally:
        with contextlib.suppress(Exception):
            _forget(exchange, topic)


class Listener:
    """The oslo.messaging listener process; what its endpoint printed, line by line."""

    def __init__(self, python: str, berth: Berth, log: Path) -> None:
        self._log = log
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [python, str(LISTENER), TRANSPORT_URL, berth.exchange, berth.topic],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next(WAIT) == {"ready": True}, self._stderr()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put({"exited": self.proc.wait()})

    def _stderr(self) -> str:
        return self._log.read_text(errors="replace")[-3000:]

    def _next(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self._lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def notifications(self, cluster: str, count: int) -> list[dict[str, Any]]:
        """The next ``count`` notifications about ``cluster``, in the order they came."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT
        while len(got) < count:
            line = self._next(deadline - time.monotonic())
            if line is None or "exited" in line:
                raise AssertionError(
                    f"{len(got)} of {count} notifications about {cluster} in {WAIT}s: "
                    f"{got}\nlistener stderr:\n{self._stderr()}"
                )
            if line.get("payload", {}).get("target", {}).get("id") == cluster:
                got.append(line)
        return got

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"the listener did not stop:\n{self._stderr()}") from None
        assert self.proc.returncode == 0, self._stderr()


@contextlib.contextmanager
def listening(python: str, berth: Berth, log: Path) -> Iterator[Listener]:
    listener = Listener(python, berth, log)
    try:
        yield listener
    finally:
        if listener.proc.poll() is None:
            listener.stop()


def _check(note: dict[str, Any], cluster: str, action: str, outcome: str) -> None:
    """One notification as Ceilometer sees it: Magnum's event type, publisher, CADF payload."""
    assert note["event_type"] == f"magnum.cluster.{action}", note
    assert note["publisher_id"] == "container-infra.berth", note
    assert note["priority"] == ("error" if outcome == "failure" else "info"), note
    payload = note["payload"]
    assert payload["typeURI"] == CADF_EVENT and payload["eventType"] == "activity", payload
    assert (payload["action"], payload["outcome"]) == (action, outcome), payload
    assert payload["target"]["id"] == cluster, payload
    assert payload["target"]["typeURI"] == "service/magnum/cluster", payload
    assert payload["initiator"]["typeURI"] == "service/security/account/user", payload
    assert note["metadata"]["message_id"] and note["metadata"]["timestamp"], note
    # The request context, as Magnum's notifier packs it: who did it, in which project.
    assert note["ctxt"]["user_id"] == payload["initiator"]["user_id"], note
    assert note["ctxt"]["project_id"] == payload["initiator"]["project_id"], note
    assert note["ctxt"]["user_id"] and note["ctxt"]["project_id"], note


def test_the_listener_reads_each_cluster_notification(
    oslo_python: str, berth: Berth, tmp_path: Path
) -> None:
    with listening(oslo_python, berth, tmp_path / "listener.log") as listener:
        cluster = berth.create("oslo-c")
        pending, success = listener.notifications(cluster, 2)
        _check(pending, cluster, "create", "pending")
        _check(success, cluster, "create", "success")
        assert success["payload"]["target"]["attachments"][0]["content"]["status"] == (
            "CREATE_COMPLETE"
        )
        berth.wait_status(cluster, "CREATE_COMPLETE")

        assert berth.api("DELETE", f"/clusters/{cluster}").status_code == 204
        pending, success = listener.notifications(cluster, 2)
        _check(pending, cluster, "delete", "pending")
        _check(success, cluster, "delete", "success")

        # A failed create reaches the listener's ``error`` method.
        bad = berth.create("oslo-bad", e2e_fail="no host has room")
        pending, failure = listener.notifications(bad, 2)
        _check(pending, bad, "create", "pending")
        _check(failure, bad, "create", "failure")
        reason = failure["payload"]["target"]["attachments"][0]["content"]["status_reason"]
        assert "no host has room" in reason
        listener.stop()


def test_notifications_wait_for_a_listener_that_starts_later(
    oslo_python: str, berth: Berth, tmp_path: Path
) -> None:
    """No consumer ever ran: the relay declared the default queues, as oslo.messaging does."""
    cluster = berth.create("oslo-early")
    berth.wait_status(cluster, "CREATE_COMPLETE")
    deadline = time.monotonic() + WAIT
    while _waiting(f"{berth.topic}.info") < 2:
        assert time.monotonic() < deadline, "the two notifications never reached the queue"
        time.sleep(0.3)
    with listening(oslo_python, berth, tmp_path / "listener.log") as listener:
        pending, success = listener.notifications(cluster, 2)
        _check(pending, cluster, "create", "pending")
        _check(success, cluster, "create", "success")
        listener.stop()
    assert _waiting(f"{berth.topic}.info") == 0  # read and acknowledged
