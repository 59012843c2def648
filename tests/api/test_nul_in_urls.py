"""A NUL character in a request's path or query string is a 400, on every store.

PostgreSQL cannot take a NUL in a text parameter: every lookup by id or name and
every list filter or marker that carried one (``GET /containers/a%00b``,
``?name=a%00b``) failed in the query, a 500, while SQLite answered 404 or an
empty list. Bodies were already refused; paths and query strings now are too, in
the error format of the API addressed.
"""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio

ZUN = [
    "/container/v1/containers/a%00b",
    "/container/v1/containers?name=a%00b",
    "/container/v1/containers?marker=a%00b",
    "/container/v1/containers/a%00b/container_actions",
    "/container/v1/capsules/a%00b",
    "/container/v1/images?marker=a%00b",
    "/container/v1/volumes/a%00b",
    "/container/v1/registries/a%00b",
    "/container/v1/security_groups/a%00b",
    "/container/v1/hosts/a%00b",
]
MAGNUM = [
    "/container-infra/v1/clusters/a%00b",
    "/container-infra/v1/clustertemplates/a%00b",
    "/container-infra/v1/clusters/a%00b/nodegroups",
    "/container-infra/v1/certificates/a%00b",
]
KEYSTONE = [
    "/identity/v3/users?name=a%00b",
    "/identity/v3/projects/a%00b",
    "/identity/v3/roles?name=a%00b",
]


async def test_a_nul_in_a_path_or_query_is_a_400_in_each_apis_format(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    for path in ZUN:
        r = await client.get(path, headers=h(admin_token))
        assert r.status_code == 400, (path, r.text)
        (error,) = r.json()["errors"]
        assert error["code"] == "container.invalid" and "NUL" in error["detail"], path
    for path in MAGNUM:
        headers = h(admin_token) | {"OpenStack-API-Version": "container-infra latest"}
        r = await client.get(path, headers=headers)
        assert r.status_code == 400, (path, r.text)
        (error,) = r.json()["errors"]
        assert error["code"] == "client" and "NUL" in error["detail"], path
    for path in KEYSTONE:
        r = await client.get(path, headers={"X-Auth-Token": admin_token})
        assert r.status_code == 400, (path, r.text)
        assert "NUL" in r.json()["error"]["message"], path
    # A name that merely looks like an escape is a name: "%2500" is "%00", not a NUL.
    r = await client.get("/container/v1/containers/a%2500b", headers=h(admin_token))
    assert r.status_code == 404, r.text
