"""Every request body is bounded: too big is a 413, nested too deep a 400, in the
addressed API's error format, before any parser sees it (the real app, both databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from berth.api.middleware import JsonDepthScanner
from berth.config import Settings
from tests.helpers import ZUN

NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "image_store": "127.0.0.1:5999",
            "image_store_username": "berth",
            "image_store_password": "store-pw",
            "image_upload_max_bytes": 4096,
        }
    )


def _json(token: str = "") -> dict[str, str]:
    headers = {"Content-Type": "application/json", **ZUN}
    return {**headers, "X-Auth-Token": token} if token else headers


def _zun_detail(r: httpx.Response) -> str:
    err = r.json()["errors"][0]
    assert err["status"] == r.status_code
    assert err["code"].startswith("container.")
    return str(err["detail"])


async def test_deeply_nested_json_is_a_400_on_the_container_api(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    r = await client.post("/container/v1/containers", content=NESTED, headers=_json(admin_token))
    assert r.status_code == 400, r.text
    assert "deeper than 32 levels" in _zun_detail(r)
    assert r.headers["x-openstack-request-id"].startswith("req-")


async def test_deeply_nested_json_is_a_400_on_the_identity_api(client: httpx.AsyncClient) -> None:
    r = await client.post("/identity/v3/auth/tokens", content=NESTED, headers=_json())
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == 400 and "deeper than 32 levels" in err["message"]


async def test_deeply_nested_json_is_a_400_on_the_cluster_template_api(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    r = await client.post(
        "/container-infra/v1/clustertemplates",
        content=NESTED,
        headers={"Content-Type": "application/json", "X-Auth-Token": admin_token},
    )
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "client" and "deeper than 32 levels" in err["detail"]


async def test_nesting_at_the_limit_still_reaches_the_api(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    # 32 levels (the object itself, hints, then 30 lists) pass the bound; the
    # schema then answers about the field, not about the nesting.
    body = b'{"image": "busybox", "hints": {"x": ' + b"[" * 30 + b"]" * 30 + b"}}"
    r = await client.post("/container/v1/containers", content=body, headers=_json(admin_token))
    assert "levels" not in r.text


async def test_a_body_over_the_limit_is_a_413_even_without_a_length(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    big = b'{"image": "' + b"a" * (1024 * 1024) + b'"}'
    r = await client.post("/container/v1/containers", content=big, headers=_json(admin_token))
    assert r.status_code == 413, r.text
    assert "larger than 1048576 bytes" in _zun_detail(r)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    r = await client.post("/container/v1/containers", content=chunked(), headers=_json(admin_token))
    assert r.status_code == 413, r.text
    r = await client.post("/identity/v3/auth/tokens", content=big, headers=_json())
    assert r.status_code == 413 and r.json()["error"]["code"] == 413


async def test_image_uploads_have_their_own_bound(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024

    r = await client.post(
        "/container/v1/images/upload?name=app:1", content=chunked(), headers=_json(admin_token)
    )
    assert r.status_code == 413, r.text
    assert "larger than 4096 bytes" in _zun_detail(r)
    # Under the bound the archive reaches the route (which then finds it is no tar).
    r = await client.post(
        "/container/v1/images/upload?name=app:1", content=b"[" * 2000, headers=_json(admin_token)
    )
    assert r.status_code == 400 and "docker save" in r.text


@pytest.mark.parametrize(
    ("chunks", "ok"),
    [
        ([b"[" * 33], False),
        ([b"[" * 32], True),
        ([b'["' + b"[" * 100 + b'"]'], True),  # brackets in a string do not nest
        ([b'["\\"' + b"[" * 40], True),  # an escaped quote does not end the string
        ([b'["\\\\"' + b"[" * 40], False),  # an escaped backslash does not escape it
        ([b'["\\', b'"' + b"[" * 40 + b'"]'], True),  # the escape spans two chunks
        ([b"[]" * 1000], True),
    ],
)
def test_the_depth_scanner_counts_only_brackets_outside_strings(
    chunks: list[bytes], ok: bool
) -> None:
    scanner = JsonDepthScanner(32)
    assert all(scanner.feed(c) for c in chunks) is ok
