"""Cluster routes (``openstack coe cluster …``) and certificates: thin handlers over services."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth import errors
from berth.api.deps import Caller, State
from berth.api.magnum.microversions import require, version_of
from berth.api.magnum.templates import read_json
from berth.api.magnum.views import (
    CLUSTER_SORT_KEYS,
    app_url,
    cluster_summary,
    cluster_view,
    links,
    page,
)
from berth.api.microversions import APIVersion
from berth.api.openapi import JSON_PATCH, body, kinds_schema, props
from berth.clusters import pki
from berth.clusters.registry import DriverRegistry
from berth.domain.clusters import CREATE_FIELDS
from berth.services.clusters import clusters as svc
from berth.services.clusters import lifecycle as cluster_lifecycle

__all__ = ["router"]

router = APIRouter()


def _drivers(request: Request) -> DriverRegistry:
    drivers: DriverRegistry = request.app.state.cluster_drivers
    return drivers


def _accepted(uuid: str) -> JSONResponse:
    return JSONResponse({"uuid": uuid}, status_code=202)


@router.get("/v1/clusters")
async def list_clusters(request: Request, state: State, ctx: Caller) -> dict[str, Any]:
    """Summaries of the caller's clusters (admins: every project's)."""
    rows = await svc.list_clusters(state.env, ctx, "get_all")
    items = [cluster_summary(request, r, version_of(request)) for r in rows]
    return page(request, items, "clusters", "clusters", sort_keys=CLUSTER_SORT_KEYS)


@router.get("/v1/clusters/detail")
async def detail_clusters(request: Request, state: State, ctx: Caller) -> dict[str, Any]:
    """Full objects of the caller's clusters."""
    rows = await svc.list_clusters(state.env, ctx, "detail")
    items = [cluster_view(request, r, version_of(request)) for r in rows]
    return page(request, items, "clusters", "clusters/detail", sort_keys=CLUSTER_SORT_KEYS)


@router.post(
    "/v1/clusters",
    openapi_extra=body(kinds_schema(CREATE_FIELDS, required=("cluster_template_id",))),
)
async def create_cluster(request: Request, state: State, ctx: Caller) -> JSONResponse:
    """202 ``{"uuid"}``: the cluster is recorded; the lifecycle worker builds it."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    since_1_10 = version_of(request) >= APIVersion(1, 10)
    try:
        row = await svc.create(state.env, ctx, _drivers(request), body, zero_ok=since_1_10)
    except errors.ClusterTemplateNotFound as exc:
        if since_1_10:
            raise
        # Magnum's ct_not_found_to_bad_request: a 400 on the 1.1-1.9 create handler only.
        raise errors.Invalid(exc.message) from None
    return _accepted(row.uuid)


@router.get("/v1/clusters/{ident}")
async def show_cluster(request: Request, state: State, ctx: Caller, ident: str) -> dict[str, Any]:
    """One cluster by UUID or name, with ``faults`` when it failed."""
    row = await svc.get(state.env, ctx, ident)
    return cluster_view(request, row, version_of(request), faults=True)


@router.patch("/v1/clusters/{ident}", openapi_extra=body(JSON_PATCH))
async def update_cluster(request: Request, state: State, ctx: Caller, ident: str) -> JSONResponse:
    """JSON-Patch of node_count (an update) or the health fields; 202 ``{"uuid"}``."""
    # Magnum's 1.1-1.2 and 1.3-1.9 patch handlers refuse a node_count of 0.
    zero_ok = version_of(request) >= APIVersion(1, 10)
    row = await svc.update(state.env, ctx, ident, await read_json(request), zero_ok=zero_ok)
    return _accepted(row.uuid)


@router.post(
    "/v1/clusters/{ident}/actions/resize",
    openapi_extra=body(
        props(required=("node_count",), node_count="int", nodes_to_remove="strs", nodegroup="str")
    ),
)
async def resize_cluster(request: Request, state: State, ctx: Caller, ident: str) -> JSONResponse:
    """Resize a worker group, default-worker unless ``nodegroup`` (microversion 1.7+)."""
    version = require(request, APIVersion(1, 7), "resize")
    body = await read_json(request)
    if not isinstance(body, dict) or "node_count" not in body:
        raise errors.Invalid("Mandatory field missing: node_count")
    unknown = sorted(set(body) - {"node_count", "nodes_to_remove", "nodegroup"})
    if unknown:
        raise errors.Invalid(f"Unknown attribute for argument cluster resize: {unknown[0]}")
    zero_ok = version >= APIVersion(1, 10)
    row = await svc.resize(
        state.env,
        ctx,
        ident,
        body["node_count"],
        zero_ok=zero_ok,
        nodegroup=body.get("nodegroup"),
        nodes_to_remove=body.get("nodes_to_remove") or [],
    )
    return _accepted(row.uuid)


@router.post(
    "/v1/clusters/{ident}/actions/upgrade",
    openapi_extra=body(props(cluster_template="str", max_batch_size="int", nodegroup="str")),
)
async def upgrade_cluster(request: Request, state: State, ctx: Caller, ident: str) -> JSONResponse:
    """Move the cluster (or a node group) to another template's node image (1.8+)."""
    if require(request, APIVersion(1, 7), "upgrade") < APIVersion(1, 8):
        raise errors.Invalid(
            "Cluster Upgrade is not supported in microversion 1.7: use 1.8 or later."
        )
    row = await svc.upgrade(state.env, ctx, ident, await read_json(request))
    return _accepted(row.uuid)


@router.delete("/v1/clusters/{ident}", status_code=204)
async def delete_cluster(state: State, ctx: Caller, ident: str) -> Response:
    """204: the delete runs in the background; the row goes at DELETE_COMPLETE."""
    await svc.delete(state.env, ctx, ident)
    return Response(status_code=204)


@router.get("/v1/certificates/{ident}")
async def show_ca(request: Request, state: State, ctx: Caller, ident: str) -> dict[str, Any]:
    """The cluster's CA certificate (PEM)."""
    row = await svc.get(state.env, ctx, ident)
    state.env.enforce(ctx, "certificate:get", row.project_id)
    if not row.ca_cert:
        raise errors.Invalid(f"Cluster {row.uuid} has no certificate authority yet.")
    return {
        "cluster_uuid": row.uuid,
        "pem": row.ca_cert,
        "links": links(app_url(request), "certificates", row.uuid),
    }


@router.post(
    "/v1/certificates",
    openapi_extra=body(
        props(required=("cluster_uuid", "csr"), cluster_uuid="str", csr="str", ca_cert_type="str")
    ),
)
async def sign_csr(request: Request, state: State, ctx: Caller) -> JSONResponse:
    """Sign a CSR with the cluster's CA; 201 with the certificate."""
    body = await read_json(request)
    if not isinstance(body, dict) or not body.get("cluster_uuid") or not body.get("csr"):
        raise errors.Invalid("Mandatory fields missing: cluster_uuid and csr")
    unknown = sorted(set(body) - {"cluster_uuid", "csr", "ca_cert_type"})
    if unknown:
        raise errors.Invalid(f"Unknown attribute for argument certificate: {unknown[0]}")
    try:
        row = await svc.get(state.env, ctx, str(body["cluster_uuid"]))
    except errors.ClusterNotFound as exc:
        raise errors.Invalid(exc.message) from None
    state.env.enforce(ctx, "certificate:create", row.project_id)
    if not row.ca_cert:
        raise errors.Invalid(f"Cluster {row.uuid} has no certificate authority yet.")
    # Off the event loop: a CSR's key may be RSA up to OpenSSL's 16,384 bits.
    ca = cluster_lifecycle.ca_of(state.env, row)
    pem = await asyncio.to_thread(pki.sign_csr, ca, str(body["csr"]))
    view = {
        "cluster_uuid": row.uuid,
        "csr": body["csr"],
        "pem": pem,
        "links": links(app_url(request), "certificates", row.uuid),
    }
    return JSONResponse(view, status_code=201)


@router.patch("/v1/certificates/{ident}")
async def rotate_ca(state: State, ctx: Caller, ident: str) -> JSONResponse:
    """Rotate the cluster CA (sync checks, then an update): 202 ``{"uuid"}``."""
    row = await svc.rotate_ca(state.env, ctx, ident)
    return _accepted(row.uuid)
