"""Zun's file injection (``mounts`` of ``type=bind``) through the real app and a scripted agent.

Upstream rule (zun 18.0.0, ``zun/api/controllers/v1/containers.py``
``_build_requested_volumes``): a ``bind`` mount's ``source`` is the file's
content, base64-encoded, kept as the volume's ``contents`` for the ``local``
provider, which decodes it (``zun/common/utils.py`` ``decode_file_data``: bad
base64 is ``Base64Exception`` "Invalid Base 64 file data", a 400) and writes it
at ``destination``. A bind source is never a host path. The real engine
(the file is there when the command runs) is covered by
tests/compat/test_openstack_file_injection.py.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.helpers import ScriptedAgent, make_member
from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio

V = "/container/v1"
CONTENT = b"hello from a file\n"


def zun_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["errors"][0]
    assert err["status"] == status and err["code"].startswith("container.")
    return str(err["detail"])


def bind(content: bytes | str, dest: str = "/data/testfile") -> dict[str, str]:
    source = content if isinstance(content, str) else base64.b64encode(content).decode()
    return {"type": "bind", "source": source, "destination": dest}


@pytest.fixture
async def agent(client: httpx.AsyncClient) -> ScriptedAgent:
    a = ScriptedAgent(client)
    await a.register()
    return a


@pytest.fixture
async def alice(client: httpx.AsyncClient, admin_token: str) -> str:
    return await make_member(client, admin_token, "team-a", "alice")


async def run(client: httpx.AsyncClient, token: str, mounts: list[Any]) -> httpx.Response:
    body = {"image": "berth-test/busybox", "command": ["cat", "/data/testfile"], "mounts": mounts}
    return await client.post(f"{V}/containers?run=true", json=body, headers=h(token))


async def files_of(agent: ScriptedAgent, uuid: str, hostname: str = "test-host") -> httpx.Response:
    return await agent.client.get(
        f"/internal/v1/hosts/{hostname}/containers/{uuid}/files", headers=agent._h()
    )


async def test_bind_source_is_file_content_kept_for_the_agent(
    client: httpx.AsyncClient, alice: str, agent: ScriptedAgent
) -> None:
    """The content is kept, shown as a bind mount (never echoed), and handed to the agent."""
    r = await run(client, alice, [bind(CONTENT)])
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    shown = (await client.get(f"{V}/containers/{uuid}", headers=h(alice))).json()
    assert shown["mounts"] == [
        {"type": "bind", "source": None, "destination": "/data/testfile", "file_size": 18}
    ]
    desired = (await agent.desired())[uuid]
    # The long poll names the file, without its content; it is no host-path mount.
    assert desired["files"] == [{"destination": "/data/testfile", "size": 18, "data": None}]
    assert desired["volumes"] == []
    got = await files_of(agent, uuid)
    assert got.status_code == 200, got.text
    assert base64.b64decode(got.json()["files"][0]["data"]) == CONTENT
    # Another host's agent gets nothing.
    assert (await files_of(agent, uuid, "other-host")).status_code == 404
    # Deleted with its container.
    await agent.observe(uuid, "stopped")
    assert (await client.delete(f"{V}/containers/{uuid}", headers=h(alice))).status_code == 204
    await agent.observe(uuid, "absent", removed=True)
    assert (await files_of(agent, uuid)).status_code == 404


async def test_an_empty_file_and_several_files(
    client: httpx.AsyncClient, alice: str, agent: ScriptedAgent
) -> None:
    """python-zunclient sends an empty local file as an empty source: an empty file."""
    r = await run(client, alice, [bind(b"", "/etc/empty"), bind(b"two", "/b/two")])
    assert r.status_code == 202, r.text
    files = (await files_of(agent, r.json()["uuid"])).json()["files"]
    assert [(f["destination"], f["size"], f["data"]) for f in files] == [
        ("/etc/empty", 0, ""),
        ("/b/two", 3, "dHdv"),
    ]


async def test_bad_file_injections_are_400_naming_the_problem(
    client: httpx.AsyncClient, alice: str, admin_token: str, agent: ScriptedAgent
) -> None:
    """Bad base64, too big, too many, unsafe destinations: Zun's 400 body, no container."""
    big = b"x" * (256 * 1024 + 1)
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([bind("not base64!")], "Invalid Base 64 file data"),
        ([bind(big)], "262144 bytes (inject_file_max_bytes)"),
        ([bind(b"x", f"/f{n}") for n in range(11)], "at most 10 files (inject_max_files)"),
        ([bind(b"x", "relative/path")], "absolute"),
        ([bind(b"x", "/")], "other than '/'"),
        ([bind(b"x", "/a/../etc/passwd")], "absolute path"),
        ([bind(b"x", "/a//b")], "normalised"),
        ([bind(b"x", "/a/\x00b")], "NUL"),
        ([bind(b"x", "/proc/sys/kernel/core_pattern")], "/proc, /sys and /dev"),
        ([bind(b"x", "/sys/fs/x")], "/proc, /sys and /dev"),
        ([bind(b"x", "/dev/sda")], "/proc, /sys and /dev"),
        ([{**bind(b"x"), "size": 1}], "not size or read_only"),
        ([bind(b"x", "/d"), bind(b"y", "/d")], "same destination"),
        ([{"type": "tmpfs", "source": "x", "destination": "/d"}], "'bind' to inject a file"),
    ]
    for mounts, words in cases:
        msg = zun_error(await run(client, alice, mounts), 400)
        assert words in msg, (mounts, msg)
    assert (await client.get(f"{V}/containers", headers=h(alice))).json()["containers"] == []
    # Even an admin's bind source is content: "/etc" is the base64 of 3 bytes, not a host path.
    r = await run(client, admin_token, [bind("/etc", "/host")])
    assert r.status_code == 202, r.text
    desired = (await agent.desired())[r.json()["uuid"]]
    assert desired["volumes"] == [] and desired["files"][0]["size"] == 3
    kept = (await files_of(agent, r.json()["uuid"])).json()["files"][0]["data"]
    assert base64.b64decode(kept) == base64.b64decode("/etc")
