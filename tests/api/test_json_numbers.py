"""``NaN``, ``Infinity`` and numbers past a float's range are not JSON: a 400 in every API.

Python's parser takes them. In a container's free-form ``hints`` one was a 500 on
PostgreSQL (its json type refuses ``NaN``); elsewhere it was stored and came back as
null, or as the string "nan" in a template's labels.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio

MAGNUM = {"OpenStack-API-Version": "container-infra latest"}
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]


async def _post(client: httpx.AsyncClient, path: str, body: str, headers: dict[str, str]) -> Any:
    return await client.post(
        path, content=body, headers=headers | {"Content-Type": "application/json"}
    )


async def test_nan_and_infinity_in_any_body_are_a_400_and_store_nothing(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    zun, magnum = h(admin_token), h(admin_token) | MAGNUM
    for number in NUMBERS:
        r = await _post(
            client,
            "/container/v1/containers",
            f'{{"image": "busybox", "hints": {{"a": {number}}}}}',
            zun,
        )
        assert r.status_code == 400, (number, r.text)
        (error,) = r.json()["errors"]
        assert error["code"] == "container.invalid" and "Malformed JSON" in error["detail"], number
        template = (
            f'{{"name": "t", "image_id": "x", "coe": "swarm-mode", "labels": {{"a": {number}}}}}'
        )
        r = await _post(client, "/container-infra/v1/clustertemplates", template, magnum)
        assert r.status_code == 400, (number, r.text)
        assert r.json()["errors"][0]["code"] == "client"
        project = f'{{"project": {{"name": "p", "extra": {number}}}}}'
        r = await _post(client, "/identity/v3/projects", project, {"X-Auth-Token": admin_token})
        assert r.status_code == 400, (number, r.text)
    listed = await client.get("/container/v1/containers?all_projects=1", headers=zun)
    assert listed.json()["containers"] == []
    templates = await client.get("/container-infra/v1/clustertemplates", headers=magnum)
    assert templates.json()["clustertemplates"] == []
    # Large and small numbers that a float holds still pass.
    r = await _post(
        client,
        "/container/v1/containers",
        '{"image": "busybox", "hints": {"a": 1e300, "b": -2.5e-300}}',
        zun,
    )
    assert r.status_code == 202, r.text
