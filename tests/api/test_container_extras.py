"""Logs follow, file copy, rebuild and resize_container through the API, in memory."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import tarfile
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.agent.archives import PutArchiveRequest
from berth.agent.server import create_agent_app
from berth.config import Settings
from berth.runtimes.base import LABEL_REBUILD
from berth.runtimes.fake import FakeDriver
from berth.services.containers import archives as archives_service
from tests.api.conftest import IMAGE
from tests.api.test_system_inmemory import run, wait_status
from tests.conftest import AGENT_PASSWORD
from tests.helpers import make_member, slow_reader
from tests.helpers import zun_headers as h
from tests.unit.test_archive_checks import xz_pax_bomb


def a_tar(name: str, data: bytes, kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


async def test_logs_follow_streams_until_the_container_stops(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    runtime.containers[c["uuid"]].logs.append("first\n")
    url = f"/container/v1/containers/{c['uuid']}/logs?follow=True&stdout=True"
    follow = asyncio.create_task(client.get(url, headers=h(admin_token)))
    await asyncio.sleep(0.2)
    runtime.containers[c["uuid"]].logs.append("second\n")
    await asyncio.sleep(0.1)
    assert not follow.done()
    runtime.exit(c["uuid"])
    r = await asyncio.wait_for(follow, 5)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == "first\nsecond\n"
    # without follow nothing changes: a JSON string
    r = await client.get(url.replace("follow=True", "follow=False"), headers=h(admin_token))
    assert r.json() == "first\nsecond\n"


async def test_copy_both_ways_and_refusals(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    base = f"/container/v1/containers/{c['uuid']}"
    data = base64.b64encode(a_tar("note.txt", b"hello")).decode()
    r = await client.post(
        f"{base}/put_archive?path=/tmp", json={"data": data}, headers=h(admin_token)
    )
    assert r.status_code == 200 and r.json() is None
    assert runtime.files[c["uuid"]]["/tmp/note.txt"] == b"hello"

    r = await client.get(f"{base}/get_archive?path=/tmp/note.txt", headers=h(admin_token))
    assert r.status_code == 200
    body = r.json()
    assert body["stat"]["name"] == "note.txt" and body["stat"]["size"] == 5
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(body["data"]))) as tar:
        extracted = tar.extractfile("note.txt")
        assert extracted is not None and extracted.read() == b"hello"
    old = {**h(admin_token), "OpenStack-API-Version": "container 1.24"}
    r = await client.get(f"{base}/get_archive?path=/tmp/note.txt", headers=old)
    assert "hello" in r.json()["data"]  # below 1.25: the tar as a string

    for payload, says in [
        (a_tar("../../etc/evil", b"x"), "contains '..'"),
        (a_tar("/etc/evil", b"x"), "absolute path"),
        (a_tar("out", b"", tarfile.SYMTYPE, "/etc"), "symbolic link"),
        (a_tar("null", b"", tarfile.CHRTYPE), "device node"),
        (b"not a tar" * 100, "not a readable tar"),
        # 10 KB of xz whose pax header claims 64 MiB: refused before it is read.
        (xz_pax_bomb(64 * 1024 * 1024), "metadata header of 67108864 bytes"),
    ]:
        body = {"data": base64.b64encode(payload).decode()}
        r = await client.post(f"{base}/put_archive?path=/tmp", json=body, headers=h(admin_token))
        assert r.status_code == 400 and says in r.json()["errors"][0]["detail"], r.text
    r = await client.post(
        f"{base}/put_archive?path=/tmp", json={"data": "%%%"}, headers=h(admin_token)
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "container.base64-exception"
    r = await client.post(
        f"{base}/put_archive?path=/nope", json={"data": data}, headers=h(admin_token)
    )
    assert r.status_code == 400 and "/nope" in r.json()["errors"][0]["detail"]
    r = await client.get(f"{base}/get_archive", headers=h(admin_token))
    assert r.status_code == 400  # path is required
    assert len(runtime.files[c["uuid"]]) == 1


async def test_put_archive_size_limit(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    state = client._transport.app.state.berth  # type: ignore[attr-defined]
    state.settings = state.env.settings = state.settings.model_copy(
        update={"archive_max_bytes": 4096}
    )
    data = base64.b64encode(a_tar("big.bin", b"x" * 10_000)).decode()
    url = f"/container/v1/containers/{c['uuid']}/put_archive?path=/tmp"
    r = await client.post(url, json={"data": data}, headers=h(admin_token))
    assert r.status_code == 400 and "archive_max_bytes" in r.json()["errors"][0]["detail"]


@pytest.mark.parametrize(("before", "after"), [("Running", "Running"), ("Stopped", "Created")])
async def test_rebuild_recreates_keeping_uuid_and_name(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver, before: str, after: str
) -> None:
    runtime.images.add("berth-test/other:2")
    c = await run(client, admin_token, name="keeper")
    base = f"/container/v1/containers/{c['uuid']}"
    if before == "Stopped":
        await client.post(f"{base}/stop", headers=h(admin_token))
        await wait_status(client, admin_token, c["uuid"], "Stopped")
    old_id = runtime.containers[c["uuid"]].runtime_id
    r = await client.post(
        f"{base}/rebuild?image=berth-test/other:2&image_driver=docker", headers=h(admin_token)
    )
    assert r.status_code == 202, r.text
    shown = await wait_status(client, admin_token, c["uuid"], after)
    assert shown["name"] == "keeper" and shown["image"] == "berth-test/other:2"
    record = runtime.containers[c["uuid"]]
    assert record.runtime_id != old_id and record.spec.image == "berth-test/other:2"
    assert LABEL_REBUILD in record.spec.labels
    actions = (await client.get(f"{base}/container_actions", headers=h(admin_token))).json()
    rebuild = [a for a in actions["containerActions"] if a["action"] == "rebuild"]
    assert rebuild and rebuild[0]["finish_time"] is not None
    await asyncio.sleep(0.6)  # another reconcile pass: not rebuilt twice
    assert runtime.containers[c["uuid"]].runtime_id == record.runtime_id


async def test_rebuild_refusals(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    base = f"/container/v1/containers/{c['uuid']}"
    r = await client.post(f"{base}/rebuild?image_driver=floppy", headers=h(admin_token))
    assert r.status_code == 400
    await client.post(f"{base}/pause", headers=h(admin_token))
    await wait_status(client, admin_token, c["uuid"], "Paused")
    assert (await client.post(f"{base}/rebuild", headers=h(admin_token))).status_code == 409


async def test_rebuild_to_a_missing_image_keeps_the_old_container(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    old_id = runtime.containers[c["uuid"]].runtime_id
    url = f"/container/v1/containers/{c['uuid']}/rebuild?image=berth-test/missing:1"
    assert (await client.post(url, headers=h(admin_token))).status_code == 202
    shown = await wait_status(client, admin_token, c["uuid"], "Error")
    assert "berth-test/missing:1" in shown["status_reason"]
    assert runtime.containers[c["uuid"]].runtime_id == old_id
    url = f"/container/v1/containers/{c['uuid']}/rebuild?image={IMAGE}"
    assert (await client.post(url, headers=h(admin_token))).status_code == 202
    await wait_status(client, admin_token, c["uuid"], "Running")
    assert runtime.containers[c["uuid"]].runtime_id != old_id


async def test_resize_container_is_the_live_resize_from_1_19(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token, memory=64)
    url = f"/container/v1/containers/{c['uuid']}/resize_container"
    old = {**h(admin_token), "OpenStack-API-Version": "container 1.18"}
    assert (await client.post(url, json={"memory": 128}, headers=old)).status_code == 406
    assert (await client.post(url, json={}, headers=h(admin_token))).status_code == 400
    r = await client.post(url, json={"memory": 128, "cpu": 0.5}, headers=h(admin_token))
    assert r.status_code == 202 and r.json()["memory"] == "128" and r.json()["cpu"] == 0.5
    await runtime.wait_for(lambda: runtime.containers[c["uuid"]].memory == 128)
    assert runtime.containers[c["uuid"]].cpu == 0.5
    actions = (
        await client.get(
            url.replace("resize_container", "container_actions"), headers=h(admin_token)
        )
    ).json()["containerActions"]
    assert "resize_container" in {a["action"] for a in actions}


async def _run_with(client: httpx.AsyncClient, token: str, **settings: int) -> dict[str, Any]:
    """A running container, on an API whose settings ``settings`` override."""
    state = client._transport.app.state.berth  # type: ignore[attr-defined]
    state.env.settings = state.settings.model_copy(update=settings)
    return await run(client, token)


async def test_a_project_runs_a_bounded_number_of_copies_at_once(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    # One copy of 90 MiB took 560 MiB of the API process; twenty at once took it all.
    c = await _run_with(client, admin_token, max_copies_per_project=1)
    base = f"/container/v1/containers/{c['uuid']}"
    tar = {"data": base64.b64encode(a_tar("note.txt", b"hi")).decode()}
    gate = runtime.gates["get_archive"] = asyncio.Event()
    held = asyncio.create_task(client.get(f"{base}/get_archive?path=/", headers=h(admin_token)))
    for _ in range(100):  # the held copy has its slot once the runtime is called
        if ("get_archive", c["uuid"]) in runtime.calls:
            break
        await asyncio.sleep(0.02)
    # Refused at once (without the bound it would wait on the gate with the first).
    r = await asyncio.wait_for(client.get(f"{base}/get_archive?path=/", headers=h(admin_token)), 5)
    assert r.status_code == 403 and "max_copies_per_project" in r.json()["errors"][0]["detail"]
    r = await client.post(f"{base}/put_archive?path=/tmp", json=tar, headers=h(admin_token))
    assert r.status_code == 403 and "max_copies_per_project" in r.json()["errors"][0]["detail"]

    # Another project copies meanwhile; the end of the held copy frees its slot.
    other = await make_member(client, admin_token, "copies-other", "copies-other-user")
    theirs = await run(client, other)
    url = f"/container/v1/containers/{theirs['uuid']}/put_archive?path=/tmp"
    assert (await client.post(url, json=tar, headers=h(other))).status_code == 200
    gate.set()
    assert (await asyncio.wait_for(held, 5)).status_code == 200
    r = await client.post(f"{base}/put_archive?path=/tmp", json=tar, headers=h(admin_token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("cut", [False, True])
async def test_a_copy_is_counted_until_its_answer_is_handed_over(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver, cut: bool
) -> None:
    """A copy's answer (up to ~133 MB) is in memory until its client has read it: the
    count was given back when the handler returned, so a project could pile up answers
    nobody read. It is held until the answer is handed over, or the answer is cut off
    (the server drops a client that reads nothing: ``berth.cli.connguard``)."""
    c = await _run_with(client, admin_token, max_copies_per_project=1)
    app = client._transport.app  # type: ignore[attr-defined]
    url = f"/container/v1/containers/{c['uuid']}/get_archive"
    headers = {**h(admin_token), "OpenStack-API-Version": "container 1.25"}
    reader = slow_reader(app, url, "path=/", headers)
    await asyncio.wait_for(reader.reading.wait(), 5)
    r = await client.get(f"{url}?path=/", headers=h(admin_token))
    assert r.status_code == 403 and "max_copies_per_project" in r.text, r.text
    answer, messages, release = reader.task, reader.messages, reader.release
    if cut:
        answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answer
    else:
        release.set()
        await asyncio.wait_for(answer, 5)
        assert messages[0]["status"] == 200
        body = json.loads(b"".join(m["body"] for m in messages[1:]))
        assert set(body) == {"data", "stat"}  # the answer, whole
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(body["data"]))) as tar:
            assert tar.getmembers() is not None  # a tar, whole
    r = await client.get(f"{url}?path=/", headers=h(admin_token))
    assert r.status_code == 200, r.text


async def test_a_copy_reads_the_same_from_an_agent_answering_base64_in_json(
    client: httpx.AsyncClient,
    admin_token: str,
    runtime: FakeDriver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control plane asks its agent for the tar itself (base64 in JSON cost one event
    loop ~1 s per 100 MB to make and read); an agent that answers in JSON still serves:
    the client gets the same bytes either way, at both microversions, a name that is not
    ASCII included."""
    c = await run(client, admin_token)
    runtime.files[c["uuid"]] = {"/tmp/été.txt": b"hello\n"}
    url = f"/container/v1/containers/{c['uuid']}/get_archive?path=/tmp/été.txt"

    async def answers() -> list[bytes]:
        got = []
        for version in ("1.24", "1.25"):
            r = await client.get(url, headers=h(admin_token, version))
            assert r.status_code == 200, r.text
            got.append(r.content)
        return got

    fetch = archives_service.call_agent
    types: list[str] = []

    async def seen(*args: Any, **kw: Any) -> Any:
        answer = await fetch(*args, **kw)
        types.append(answer.headers["content-type"])
        return answer

    monkeypatch.setattr(archives_service, "call_agent", seen)
    tar_answers = await answers()
    assert types == ["application/x-tar"] * 2  # the tar itself, not base64 in JSON
    assert json.loads(tar_answers[1])["stat"]["name"] == "été.txt"

    async def json_agent(*args: Any, **kw: Any) -> Any:
        kw.pop("accept", None)  # as an agent that knows no tar answer
        return httpx.Response(200, json=await fetch(*args, **kw))

    monkeypatch.setattr(archives_service, "call_agent", json_agent)
    assert await answers() == tar_answers


async def test_a_put_sends_the_agent_the_tar_and_an_older_agent_its_json(
    client: httpx.AsyncClient,
    admin_token: str,
    runtime: FakeDriver,
    app: FastAPI,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent gets the tar itself (as base64 in JSON, 100 MB cost the API a JSON
    rendering and the agent a parse and a decoding); an agent that reads only
    ``{"data": <base64>}`` refuses that and gets the JSON: the file lands either way."""
    c = await run(client, admin_token)
    url = f"/container/v1/containers/{c['uuid']}/put_archive?path=/tmp"
    sent: list[str] = []
    put = archives_service.call_agent

    async def seen(*args: Any, **kw: Any) -> Any:
        sent.append(kw["content"][1] if "content" in kw else "json")
        return await put(*args, **kw)

    monkeypatch.setattr(archives_service, "call_agent", seen)
    tar = a_tar("été.txt", b"hello")
    r = await client.post(
        url, json={"data": base64.b64encode(tar).decode()}, headers=h(admin_token)
    )
    assert r.status_code == 200, r.text
    assert runtime.files[c["uuid"]]["/tmp/été.txt"] == b"hello"
    assert sent == ["application/x-tar"]

    # An agent of before: its archive upload route read a JSON body only.
    older = create_agent_app(runtime, AGENT_PASSWORD)
    older.router.routes[:] = [
        r
        for r in older.router.routes
        if getattr(r, "path", "") != "/v1/containers/{uuid}/archive"
        or "PUT" not in getattr(r, "methods", ())
    ]

    @older.put("/v1/containers/{uuid}/archive")
    async def json_only(uuid: str, path: str, body: PutArchiveRequest) -> dict[str, int]:
        data = base64.b64decode(body.data, validate=True)
        await runtime.put_archive(uuid, path, data)
        return {"size": len(data)}

    app.state.berth.env.agents.local[settings.agent_host] = httpx.ASGITransport(app=older)
    sent.clear()
    tar = a_tar("older.txt", b"to an older agent")
    body = {"data": base64.b64encode(tar).decode()}
    r = await client.post(url, json=body, headers=h(admin_token, "1.25"))
    assert r.status_code == 200, r.text
    assert runtime.files[c["uuid"]]["/tmp/older.txt"] == b"to an older agent"
    assert sent == ["application/x-tar", "json"]
    # Its own refusals still reach the client as they are.
    r = await client.post(url.replace("/tmp", "/nope"), json=body, headers=h(admin_token, "1.25"))
    assert r.status_code == 400 and "/nope" in r.json()["errors"][0]["detail"], r.text


async def test_execute_output_past_the_bound_is_a_400(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await _run_with(client, admin_token, execute_max_output_bytes=64)
    url = f"/container/v1/containers/{c['uuid']}/execute"
    r = await client.post(
        url, params={"command": "echo short", "run": "true"}, headers=h(admin_token)
    )
    assert r.status_code == 200 and r.json()["output"] == "echo short\n"
    long = "echo " + "x" * 100  # the fake runtime echoes its command
    r = await client.post(url, params={"command": long, "run": "true"}, headers=h(admin_token))
    assert r.status_code == 400, r.text
    assert "execute_max_output_bytes" in r.json()["errors"][0]["detail"]
