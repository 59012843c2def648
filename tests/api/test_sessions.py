"""Interactive exec and attach through the API's websocket, in memory (FakeDriver echo sessions).

The websocket is opened on the real app with ``MemoryWebSocket`` (the same
in-memory client the all-in-one API uses to reach its agent), so every
handshake rule is exercised: token, origin, subprotocol.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from berth.runtimes.fake import FakeDriver
from berth.services.hosts.asgi_memory import MemoryWebSocket
from tests.api.test_system_inmemory import run, wait_status
from tests.helpers import make_member
from tests.helpers import zun_headers as h

ORIGIN = "http://127.0.0.1:9517"


async def open_ws(
    app: FastAPI, url: str, *, origin: str | None = ORIGIN, **replace: str
) -> MemoryWebSocket:
    """Open ``url`` (a proxy_url/attach URL) on the app; ``replace`` swaps query values."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(replace)
    headers = {"host": parts.netloc}
    if origin is not None:
        headers["origin"] = origin
    ws = MemoryWebSocket(
        app,
        parts.path,
        "&".join(f"{k}={v}" for k, v in query.items()),
        headers,
        subprotocols=["binary", "base64"],
    )
    await ws.connect()
    return ws


async def exec_session(client: httpx.AsyncClient, token: str, uuid: str) -> dict[str, Any]:
    r = await client.post(
        f"/container/v1/containers/{uuid}/execute?command=sh&interactive=True&run=False",
        headers=h(token),
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_interactive_exec_session(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    body = await exec_session(client, admin_token, c["uuid"])
    assert body["output"] is None and body["exit_code"] is None
    assert len(body["exec_id"]) == 64
    assert body["proxy_url"].startswith("ws://127.0.0.1:9517/container/v1/ws?token=")
    assert f"uuid={c['uuid']}" in body["proxy_url"]
    assert f"exec_id={body['exec_id']}" in body["proxy_url"]
    assert runtime.execs[body["exec_id"]] == (c["uuid"], ["sh"], True)

    ws = await open_ws(app, body["proxy_url"])
    assert ws.subprotocol == "binary"
    await ws.send(b"echo hi\r")
    assert await ws.receive() == b"echo hi\r"
    url = f"/container/v1/containers/{c['uuid']}/execute_resize"
    r = await client.post(f"{url}?exec_id={body['exec_id']}&w=120&h=40", headers=h(admin_token))
    assert r.status_code == 200 and r.json() is None
    assert runtime.tty_sizes[body["exec_id"]] == (40, 120)
    r = await client.post(f"{url}?exec_id={'0' * 64}&w=1&h=1", headers=h(admin_token))
    assert r.status_code == 400  # not an exec of this container

    await ws.send(b"~.")  # the client's escape, after the Enter above
    assert await ws.receive() is None
    session = runtime.sessions[-1]
    await runtime.wait_for(lambda: session.closed)
    assert bytes(session.received) == b"echo hi\r"  # the escape never reached the process
    await ws.close()


async def test_tokens_are_single_use_bound_and_short_lived(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    url = (await exec_session(client, admin_token, c["uuid"]))["proxy_url"]
    wrong_origin = await open_ws(app, url, origin="http://evil.example:9517")
    assert wrong_origin.close_code == 1008
    wrong_uuid = await open_ws(app, url, uuid="0" * 32)
    assert wrong_uuid.close_code == 1008  # and the token is spent
    assert (await open_ws(app, url)).close_code == 1008

    url = (await exec_session(client, admin_token, c["uuid"]))["proxy_url"]
    ws = await open_ws(app, url, origin=None)  # no Origin: not a browser, allowed
    assert ws.close_code is None
    await ws.close()
    reused = await open_ws(app, url)
    assert reused.close_code == 1008

    state = app.state.berth
    state.env.settings = state.settings.model_copy(update={"stream_token_ttl": 0.05})
    url = (await exec_session(client, admin_token, c["uuid"]))["proxy_url"]
    await asyncio.sleep(0.2)
    expired = await open_ws(app, url)
    assert expired.close_code == 1008
    assert len([s for s in runtime.sessions if s.kind == "exec"]) == 1


async def test_attach_needs_interactive_and_running(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    plain = await run(client, admin_token)
    r = await client.get(f"/container/v1/containers/{plain['uuid']}/attach", headers=h(admin_token))
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "container.no-interactive-flag"

    c = await run(client, admin_token, interactive=True, tty=True)
    base = f"/container/v1/containers/{c['uuid']}"
    r = await client.get(f"{base}/attach", headers=h(admin_token))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    url = r.json()
    assert url.startswith("ws://") and "exec_id" not in url
    ws = await open_ws(app, url)
    await ws.send(b"date\r")
    assert await ws.receive() == b"date\r"
    r = await client.post(f"{base}/resize?w=80&h=24", headers=h(admin_token))
    assert r.status_code == 200 and runtime.tty_sizes[c["uuid"]] == (24, 80)
    assert (await client.post(f"{base}/resize?w=0&h=24", headers=h(admin_token))).status_code == 400
    await ws.close()
    await runtime.wait_for(lambda: runtime.sessions[-1].closed)

    await client.post(f"{base}/stop", headers=h(admin_token))
    await wait_status(client, admin_token, c["uuid"], "Stopped")
    assert (await client.get(f"{base}/attach", headers=h(admin_token))).status_code == 409
    r = await client.post(f"{base}/execute?command=sh&run=False", headers=h(admin_token))
    assert r.status_code == 409


async def test_another_project_gets_404_and_cannot_use_its_own_tokens_here(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    alice = await make_member(client, admin_token, "team-a", "alice")
    bob = await make_member(client, admin_token, "team-b", "bob")
    mine = await run(client, alice, interactive=True, tty=True)
    theirs = await run(client, bob, interactive=True, tty=True)
    base = f"/container/v1/containers/{mine['uuid']}"
    for method, path in [
        ("GET", "attach"),
        ("POST", "resize?w=80&h=24"),
        ("POST", "execute?command=sh&interactive=True&run=False"),
        ("POST", f"execute_resize?exec_id={'a' * 64}&w=80&h=24"),
        ("GET", "logs?follow=True"),
        ("GET", "get_archive?path=/tmp"),
        ("POST", "rebuild"),
        ("POST", "resize_container?memory=64"),
    ]:
        r = await client.request(method, f"{base}/{path}", headers=h(bob))
        assert r.status_code == 404, (path, r.text)
    r = await client.post(f"{base}/put_archive?path=/tmp", json={"data": "eA=="}, headers=h(bob))
    assert r.status_code == 404

    # bob's own, valid token does not open alice's container
    bobs = await client.get(f"/container/v1/containers/{theirs['uuid']}/attach", headers=h(bob))
    ws = await open_ws(app, bobs.json(), uuid=mine["uuid"])
    assert ws.close_code == 1008
    assert not [s for s in runtime.sessions if s.uuid == mine["uuid"]]
    # alice's works for alice
    url = (await client.get(f"{base}/attach", headers=h(alice))).json()
    ws = await open_ws(app, url)
    assert ws.close_code is None
    await ws.close()


async def test_a_project_holds_a_bounded_number_of_sessions_and_followed_logs(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    state = app.state.berth
    state.env.settings = state.settings.model_copy(update={"max_streams_per_project": 2})
    c = await run(client, admin_token)
    first = await open_ws(app, (await exec_session(client, admin_token, c["uuid"]))["proxy_url"])
    url = f"/container/v1/containers/{c['uuid']}/logs?follow=True&stdout=True"
    follow = asyncio.create_task(client.get(url, headers=h(admin_token)))
    for _ in range(100):  # the followed log holds the second slot once it is open
        await asyncio.sleep(0.02)
        third = await open_ws(
            app, (await exec_session(client, admin_token, c["uuid"]))["proxy_url"]
        )
        if third.close_code is not None:
            break
        await third.close()
    assert third.close_code == 1008  # refused before any session was opened
    r = await client.get(url, headers=h(admin_token))
    assert r.status_code == 403
    assert "max_streams_per_project" in r.json()["errors"][0]["detail"]
    opened = len(runtime.sessions)

    # Another project is not affected by this one's sessions.
    other = await make_member(client, admin_token, "streams-other", "streams-other-user")
    theirs = await run(client, other)
    ws = await open_ws(app, (await exec_session(client, other, theirs["uuid"]))["proxy_url"])
    assert ws.close_code is None
    await ws.close()

    # Ending a session frees its slot; so does the end of a followed log.
    await first.close()
    runtime.exit(c["uuid"])
    assert (await asyncio.wait_for(follow, 5)).status_code == 200
    d = await run(client, admin_token)
    held: list[MemoryWebSocket] = []
    for _ in range(100):  # the slots free as the server side of each ends
        ws = await open_ws(app, (await exec_session(client, admin_token, d["uuid"]))["proxy_url"])
        if ws.close_code is None:
            held.append(ws)
        if len(held) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(held) == 2
    assert len(runtime.sessions) == opened + 3
    for ws in held:
        await ws.close()


async def test_a_project_holds_a_bounded_number_of_unopened_urls(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    """An interactive exec is made on its host's engine when it is asked for, before its
    URL is opened: past ``max_unopened_sessions_per_project`` URLs neither opened nor
    expired, one more is a 403 before the host makes anything; opening one, or its
    expiry, makes room; another project is not affected."""
    state = app.state.berth
    state.env.settings = state.settings.model_copy(update={"max_unopened_sessions_per_project": 2})
    c = await run(client, admin_token, interactive=True)
    first = await exec_session(client, admin_token, c["uuid"])
    attach = await client.get(
        f"/container/v1/containers/{c['uuid']}/attach", headers=h(admin_token)
    )
    assert attach.status_code == 200, attach.text
    made = len(runtime.execs)
    for r in (
        await client.post(
            f"/container/v1/containers/{c['uuid']}/execute?command=sh&interactive=True&run=False",
            headers=h(admin_token),
        ),
        await client.get(f"/container/v1/containers/{c['uuid']}/attach", headers=h(admin_token)),
    ):
        assert r.status_code == 403, r.text
        assert "max_unopened_sessions_per_project" in r.json()["errors"][0]["detail"]
    assert len(runtime.execs) == made  # refused before the host made an exec

    other = await make_member(client, admin_token, "unopened-other", "unopened-other-user")
    theirs = await run(client, other)
    await exec_session(client, other, theirs["uuid"])

    ws = await open_ws(app, first["proxy_url"])  # opening one makes room
    assert ws.close_code is None
    second = await exec_session(client, admin_token, c["uuid"])
    await ws.close()
    ws = await open_ws(app, second["proxy_url"])
    await ws.close()
    # Expired ones make room too (the attach URL of the start is still unopened).
    state.env.settings = state.env.settings.model_copy(update={"stream_token_ttl": 0.2})
    await client.get(f"/container/v1/containers/{c['uuid']}/attach", headers=h(admin_token))
    r = await client.get(f"/container/v1/containers/{c['uuid']}/attach", headers=h(admin_token))
    assert r.status_code == 403, r.text
    await asyncio.sleep(0.3)
    r = await client.get(f"/container/v1/containers/{c['uuid']}/attach", headers=h(admin_token))
    assert r.status_code == 200, r.text
