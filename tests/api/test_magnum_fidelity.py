"""Answers where Magnum 23 clients and tempest look: each test cites the upstream rule."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from berth.services.clusters import quotas as cluster_quotas
from tests.helpers import ScriptedAgent, make_member, zun_headers

V = "/container-infra/v1"
CT = f"{V}/clustertemplates"


def _h(token: str, version: str = "latest") -> dict[str, str]:
    return {"X-Auth-Token": token, "OpenStack-API-Version": f"container-infra {version}"}


def _detail(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["detail"])


async def _post(client: httpx.AsyncClient, token: str, **fields: Any) -> httpx.Response:
    body = {"coe": "swarm-mode", "image_id": "berth/swarm-node:1", **fields}
    return await client.post(CT, json=body, headers=_h(token))


async def test_cluster_distro_null_is_accepted_and_a_value_must_match_a_driver(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """magnum/api/controllers/v1/cluster_template.py ``ClusterTemplate.cluster_distro`` is a
    plain StringType(min_length=1); ``post`` overwrites it from the image, and
    magnum/api/validation.py ``enforce_driver_supported`` refuses (400) a distro no
    loaded driver serves for the template's (server_type, coe).
    """
    r = await _post(client, admin_token, name="null-distro", cluster_distro=None)
    assert r.status_code == 201, r.text
    r = await _post(client, admin_token, name="atomic", cluster_distro="fedora-atomic")
    assert r.status_code == 201, r.text
    assert r.json()["cluster_distro"] == "fedora-atomic"
    r = await _post(client, admin_token, cluster_distro="ubuntu")
    assert r.status_code == 400
    assert "(vm, ubuntu, swarm-mode)" in _detail(r)
    r = await _post(client, admin_token, cluster_distro="")
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("coe", "field", "value", "words"),
    [
        ("kubernetes", "network_driver", "invalid_network_driver", "is not supported"),
        ("kubernetes", "network_driver", "cilium", "is not allowed"),
        ("kubernetes", "volume_driver", "invalid_volume_driver", "is not supported"),
        ("kubernetes", "volume_driver", "rexray", "cinder/unspecified volume driver"),
        ("swarm", "network_driver", "calico", "docker/flannel/unspecified network driver"),
        ("swarm-mode", "network_driver", "flannel", "docker/unspecified network driver"),
        ("swarm-mode", "volume_driver", "cinder", "rexray/unspecified volume driver"),
    ],
)
async def test_drivers_outside_the_coe_lists_are_400(
    client: httpx.AsyncClient, admin_token: str, coe: str, field: str, value: str, words: str
) -> None:
    """magnum/api/validation.py ``enforce_network_driver_types_create`` /
    ``enforce_volume_driver_types_create`` with ``K8sValidator`` (Magnum 23, its default
    ``kubernetes_allowed_network_drivers`` flannel, calico) and Magnum 16's
    ``SwarmValidator``: InvalidParameterValue, a 400.
    """
    r = await _post(client, admin_token, coe=coe, **{field: value})
    assert r.status_code == 400, r.text
    assert value in _detail(r) and words in _detail(r)


async def test_drivers_are_checked_on_patch_too(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """magnum/api/validation.py ``enforce_network_driver_types_update`` and
    ``enforce_volume_driver_types_update``: the patched template is validated.
    """
    r = await _post(client, admin_token, name="k8s", coe="kubernetes", volume_driver="cinder")
    assert r.status_code == 201, r.text
    assert r.json()["network_driver"] == "flannel"
    for path, value in [("/network_driver", "invalid"), ("/volume_driver", "invalid")]:
        patch = [{"op": "replace", "path": path, "value": value}]
        r = await client.patch(f"{CT}/k8s", json=patch, headers=_h(admin_token))
        assert r.status_code == 400, r.text
    patch = [{"op": "replace", "path": "/network_driver", "value": "calico"}]
    r = await client.patch(f"{CT}/k8s", json=patch, headers=_h(admin_token))
    assert r.status_code == 200 and r.json()["network_driver"] == "calico"


@pytest.mark.parametrize(
    "image",
    ["6b1d2ae8-4a46-4b4a-9ad1-3a6d0e5c0c11", "No Such Image!", "berth/node:bad tag"],
)
async def test_an_image_that_exists_nowhere_is_image_not_found(
    client: httpx.AsyncClient, admin_token: str, image: str
) -> None:
    """magnum/api/controllers/v1/cluster_template.py ``post`` →
    magnum/api/attr_validator.py ``validate_image``: exception.ImageNotFound, code 400,
    "Image %(image_id)s could not be found." (a Glance ID Berth has no image for, or a
    reference no registry can hold).
    """
    r = await _post(client, admin_token, image_id=image)
    assert r.status_code == 400, r.text
    assert _detail(r).startswith(f"Image {image} could not be found")
    r = await _post(client, admin_token, name="ok")
    assert r.status_code == 201, r.text
    patch = [{"op": "replace", "path": "/image_id", "value": image}]
    r = await client.patch(f"{CT}/ok", json=patch, headers=_h(admin_token))
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("body", [{"op": "replace"}, "x", [], [{"op": "move", "path": "/name"}]])
async def test_a_malformed_patch_is_400_before_the_template_is_looked_up(
    client: httpx.AsyncClient, admin_token: str, body: Any
) -> None:
    """magnum/api/controllers/v1/cluster_template.py ``patch`` is
    ``@wsme.validate(types.uuid_or_name, [ClusterTemplatePatchType])``: wsme rejects a
    body that is not a list of patch operations before the controller looks anything up.
    """
    r = await client.patch(f"{CT}/no-such-template", json=body, headers=_h(admin_token))
    assert r.status_code == 400, r.text
    good = [{"op": "replace", "path": "/name", "value": "n"}]
    r = await client.patch(f"{CT}/no-such-template", json=good, headers=_h(admin_token))
    assert r.status_code == 404


@pytest.mark.parametrize(("version", "status"), [("1.1", 400), ("1.9", 400), ("1.10", 404)])
async def test_cluster_create_with_an_unknown_template(
    client: httpx.AsyncClient, admin_token: str, version: str, status: int
) -> None:
    """magnum/api/controllers/v1/cluster.py: the 1.1-1.9 ``post`` carries
    ``@validation.ct_not_found_to_bad_request()`` (ClusterTemplateNotFound becomes a
    400); the 1.10+ ``post`` does not (404).
    """
    body = {"cluster_template_id": "no-such-template", "name": "c1"}
    r = await client.post(f"{V}/clusters", json=body, headers=_h(admin_token, version))
    assert r.status_code == status, r.text
    assert _detail(r) == "ClusterTemplate no-such-template could not be found."


async def test_mservices_report_magnum_conductor(
    client: httpx.AsyncClient, app: Any, admin_token: str
) -> None:
    """magnum/api/controllers/v1/magnum_services.py ``MagnumService.binary`` is an Enum of
    magnum/objects/fields.py ``MagnumServiceBinary.ALL`` (``magnum-conductor``).
    """
    await cluster_quotas.heartbeat(app.state.berth.env)
    r = await client.get(f"{V}/mservices", headers=_h(admin_token))
    assert [s["binary"] for s in r.json()["mservices"]] == ["magnum-conductor"]


async def test_zun_services_report_zun_compute(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """zun/api/controllers/v1/zun_services.py lists the ``zun-compute`` service per host;
    ``openstack appcontainer service disable <host> zun-compute`` names it that way.
    """
    await ScriptedAgent(client).register()
    hdr = zun_headers(admin_token)
    services = (await client.get("/container/v1/services", headers=hdr)).json()["services"]
    assert [(s["host"], s["binary"]) for s in services] == [("test-host", "zun-compute")]
    r = await client.put(
        "/container/v1/services/disable",
        json={"host": "test-host", "binary": "zun-compute", "disabled_reason": "x"},
        headers=hdr,
    )
    assert r.status_code == 200, r.text
    assert r.json()["service"]["binary"] == "zun-compute"
    services = (await client.get("/container/v1/services", headers=hdr)).json()["services"]
    assert services[0]["disabled"] is True


@pytest.mark.parametrize("collection", ["clustertemplates", "clusters", "clusters/detail"])
async def test_unknown_sort_key_is_400_even_on_an_empty_page(
    client: httpx.AsyncClient, admin_token: str, collection: str
) -> None:
    """magnum/db/sqlalchemy/api.py ``_paginate_query``: a sort_key that is no column of the
    table is InvalidParameterValue 'The sort_key value "x" is an invalid field for
    sorting' (400), whether or not any row exists.
    """
    alice = await make_member(client, admin_token, "team-a", "alice")
    r = await client.get(f"{V}/{collection}?sort_key=nope", headers=_h(alice))
    assert r.status_code == 400, r.text
    assert _detail(r) == 'The sort_key value "nope" is an invalid field for sorting'
    r = await client.get(f"{V}/{collection}?sort_key=created_at", headers=_h(alice))
    assert r.status_code == 200, r.text


async def test_unknown_nodegroup_sort_key_is_400(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """magnum/api/controllers/v1/nodegroup.py ``get_all`` pages through
    magnum/db/sqlalchemy/api.py ``_paginate_query`` over the NodeGroup columns.
    """
    assert (await _post(client, admin_token, name="tpl")).status_code == 201
    body = {"cluster_template_id": "tpl", "name": "c1"}
    r = await client.post(f"{V}/clusters", json=body, headers=_h(admin_token))
    assert r.status_code == 202, r.text
    groups = f"{V}/clusters/c1/nodegroups"
    r = await client.get(f"{groups}?sort_key=nope", headers=_h(admin_token))
    assert r.status_code == 400, r.text
    assert _detail(r) == 'The sort_key value "nope" is an invalid field for sorting'
    r = await client.get(f"{groups}?sort_key=role&sort_dir=desc", headers=_h(admin_token))
    assert [g["name"] for g in r.json()["nodegroups"]] == ["default-worker", "default-master"]
