"""Cluster pages (the Magnum-compatible clusters): templates, create with live progress, a
cluster's node groups, addresses, health and step timeline, delete, and the download of its
client configuration.

Everything goes through ``berth.services.clusters.clusters`` / ``cluster_templates`` /
``cluster_nodegroups`` with the session's context, so policy and tenancy are the API's
(another project's cluster is a 404). The configuration bundle is what
``openstack coe cluster config`` writes: a fresh client key, its certificate signed by the
cluster CA (policy ``certificate:create``, as ``POST /v1/certificates``), the CA and an
env file, zipped.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.clusters import pki
from berth.clusters.client_config import ClientConfig, new_client_key, zip_bundle
from berth.clusters.registry import DriverRegistry
from berth.dashboard.forms import key_value_lines
from berth.dashboard.pages import explain, redirect
from berth.dashboard.render import env_of, fragment, page, permissions
from berth.dashboard.session import Flash, Session
from berth.domain import cluster_templates as template_spec
from berth.domain.cluster_settings import DEFAULT_CREATE_TIMEOUT, ClusterSettings
from berth.domain.clusters import FLAVORS
from berth.services.clusters import clusters as svc
from berth.services.clusters import lifecycle as cluster_lifecycle
from berth.services.clusters import nodegroups as cluster_nodegroups
from berth.services.clusters import templates as cluster_templates
from berth.services.clusters.groups import display_status
from berth.services.containers import timeline
from berth.store.tables import ClusterRow

__all__ = [
    "cluster_config",
    "cluster_create",
    "cluster_delete",
    "cluster_detail",
    "cluster_live",
    "cluster_rows",
    "clusters_page",
    "new_cluster",
    "template_create",
    "template_delete",
    "templates_page",
]

_STEPS = 50


def _drivers(request: Request) -> DriverRegistry:
    drivers: DriverRegistry = request.app.state.cluster_drivers
    return drivers


def status_class(status: str) -> str:
    """The badge colour of a Magnum status."""
    if status.endswith("_FAILED"):
        return "bad"
    if status.endswith("_IN_PROGRESS"):
        return "busy"
    if status.startswith("DELETE"):
        return "idle"
    return "ok" if status.endswith("_COMPLETE") else "warn"


async def _template_names(request: Request, session: Session) -> dict[str, str]:
    rows = await cluster_templates.list_templates(env_of(request), session.ctx, "get_all")
    return {t.uuid: t.name for t in rows}


async def _rows(request: Request, session: Session) -> dict[str, Any]:
    rows = await svc.list_clusters(env_of(request), session.ctx, "get_all")
    return {
        "clusters": sorted(rows, key=lambda r: r.created_at, reverse=True),
        "template_names": await _template_names(request, session),
        "cls": status_class,
        "can": permissions(request, session),
    }


async def clusters_page(request: Request, session: Session) -> Response:
    """The project's clusters; the table refreshes itself every three seconds."""
    return await page(request, "clusters.html", session, **await _rows(request, session))


async def cluster_rows(request: Request, session: Session) -> Response:
    """The table body alone, for htmx polling."""
    return fragment("cluster_rows.html", **await _rows(request, session))


def _blank() -> dict[str, str]:
    return {
        "name": "",
        "template": "",
        "master_count": "1",
        "node_count": "1",
        "flavor_id": "",
        "master_flavor_id": "",
        "create_timeout": str(DEFAULT_CREATE_TIMEOUT),
        "keypair": "",
        "labels": "",
    }


async def _new_values(request: Request, session: Session) -> dict[str, Any]:
    rows = await cluster_templates.list_templates(env_of(request), session.ctx, "get_all")
    return {"templates": rows, "flavors": FLAVORS}


async def new_cluster(request: Request, session: Session) -> Response:
    """The create form (the template may be preselected with ``?template=``).

    A caller the policy does not let create clusters gets the 403 page, not a form.
    """
    env_of(request).enforce(session.ctx, "cluster:create")
    form = {**_blank(), "template": request.query_params.get("template", "")}
    values = await _new_values(request, session)
    return await page(request, "cluster_new.html", session, form=form, **values)


def _int(form: dict[str, str], field: str, label: str) -> int | None:
    text = form.get(field, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise errors.Invalid(f"{label} must be a whole number, not {text!r}.") from None


def _labels(text: str) -> dict[str, str]:
    return key_value_lines(
        text,
        "Labels",
        "one label per line, e.g. docker_volume_type=ssd",
        lambda key: bool(key) and not any(c.isspace() for c in key),
        strip_values=True,
    )


def cluster_body(form: dict[str, str]) -> dict[str, Any]:
    """The create form as a Magnum cluster-create body (checked again by the service)."""
    if not form.get("template"):
        raise errors.Invalid("Choose a cluster template (create one first if there is none).")
    body: dict[str, Any] = {
        "cluster_template_id": form["template"],
        "name": form.get("name", "").strip() or None,
        "master_count": _int(form, "master_count", "Masters"),
        "node_count": _int(form, "node_count", "Nodes"),
        "create_timeout": _int(form, "create_timeout", "The timeout"),
        "flavor_id": form.get("flavor_id") or None,
        "master_flavor_id": form.get("master_flavor_id") or None,
        "keypair": form.get("keypair", "").strip() or None,
    }
    labels = _labels(form.get("labels", ""))
    if labels:
        body["labels"] = labels
    return {k: v for k, v in body.items() if v is not None}


async def cluster_create(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Create from the form; a mistake brings the form back filled in, with the reason."""
    env = env_of(request)
    try:
        row = await svc.create(
            env, session.ctx, _drivers(request), cluster_body(form), zero_ok=True
        )
    except errors.Unauthorized:
        raise
    except errors.BerthError as exc:
        return await page(
            request,
            "cluster_new.html",
            session,
            status=403 if isinstance(exc, errors.Forbidden) else 400,
            flash=Flash("error", explain(exc, session)),
            form={**_blank(), **form},
            **await _new_values(request, session),
        )
    return redirect(f"/clusters/{row.uuid}", ("ok", f"Cluster {row.name} is being created."))


async def _live_values(request: Request, session: Session) -> dict[str, Any]:
    env = env_of(request)
    groups = await cluster_nodegroups.list_groups(env, session.ctx, request.path_params["ident"])
    row: ClusterRow = groups.cluster
    steps = await timeline.recent_events(
        env, session.ctx, all_projects=session.ctx.is_admin, resource_uuid=row.uuid, limit=_STEPS
    )
    return {
        "c": row,
        "a": ClusterSettings.from_json(row.attrs),
        "groups": [(g, display_status(g, row)) for g in groups.rows],
        "steps": [e for e in steps if e.event_type == "cluster.step"],
        "cls": status_class,
        "can": permissions(request, session),
        "csrf": session.csrf,
        "settled": not row.status.endswith("_IN_PROGRESS"),
        "may_config": bool(row.ca_cert) and row.status != "DELETE_IN_PROGRESS",
    }


async def cluster_detail(request: Request, session: Session) -> Response:
    """One cluster: live status and progress, node groups, addresses, health, its steps."""
    values = await _live_values(request, session)
    names = await _template_names(request, session)
    template = names.get(values["c"].cluster_template_id, values["c"].cluster_template_id)
    return await page(request, "cluster_detail.html", session, template_name=template, **values)


async def cluster_live(request: Request, session: Session) -> Response:
    """The live part of the detail page, for htmx polling."""
    return fragment("cluster_live.html", **await _live_values(request, session))


async def cluster_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Start deleting the cluster; the list shows it go."""
    ident = request.path_params["ident"]
    await svc.delete(env_of(request), session.ctx, ident)
    return redirect("/clusters", ("ok", f"Deleting cluster {form.get('name') or ident}."))


async def client_config(request: Request, session: Session, ident: str) -> ClientConfig:
    """A fresh client key and certificate for the cluster, with its CA and address."""
    env = env_of(request)
    row = await svc.get(env, session.ctx, ident)
    env.enforce(session.ctx, "certificate:create", row.project_id)
    if not row.ca_cert:
        raise errors.Invalid(
            f"Cluster {row.name} has no certificate authority yet: wait until it is created."
        )
    key_pem, csr_pem = await asyncio.to_thread(new_client_key, session.ctx.user_name or "user")
    ca = cluster_lifecycle.ca_of(env, row)
    cert_pem = await asyncio.to_thread(pki.sign_csr, ca, csr_pem)
    address = ClusterSettings.from_json(row.attrs).api_address
    return ClientConfig(row.name, address, row.ca_cert, cert_pem, key_pem)


async def cluster_config(request: Request, session: Session, form: dict[str, str]) -> Response:
    """The zip of ca.pem, cert.pem, key.pem and env.sh (a POST: it issues a certificate)."""
    config = await client_config(request, session, request.path_params["ident"])
    filename = f"{config.cluster_name}-config.zip".replace('"', "")
    return Response(
        zip_bundle(config),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# -- templates ---------------------------------------------------------------------------


async def templates_page(request: Request, session: Session) -> Response:
    """The templates the project may use, and the form to create one."""
    env = env_of(request)
    rows = await cluster_templates.list_templates(env, session.ctx, "get_all")
    return await page(
        request,
        "clustertemplates.html",
        session,
        templates=[(t, cluster_templates.attributes(t)) for t in rows],
        coes=template_spec.COES,
        flavors=FLAVORS,
        may_publish=env.allowed(session.ctx, "clustertemplate:publish"),
    )


def template_body(form: dict[str, str]) -> dict[str, Any]:
    """The template form as a Magnum template body (checked again by the service)."""
    image = form.get("image_id", "").strip()
    if not image:
        raise errors.Invalid("Give the node image (image_id), like berth-test/swarm-node:latest.")
    body: dict[str, Any] = {
        "name": form.get("name", "").strip() or None,
        "coe": form.get("coe") or "swarm-mode",
        "image_id": image,
        "flavor_id": form.get("flavor_id") or None,
        "master_flavor_id": form.get("master_flavor_id") or None,
        "driver": form.get("driver", "").strip() or None,
        "docker_volume_size": _int(form, "docker_volume_size", "The volume size"),
        "tls_disabled": form.get("tls_disabled") == "on",
        "public": form.get("public") == "on",
    }
    labels = _labels(form.get("labels", ""))
    if labels:
        body["labels"] = labels
    return {k: v for k, v in body.items() if v is not None}


async def template_create(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Store a template for the project."""
    row = await cluster_templates.create(env_of(request), session.ctx, template_body(form))
    return redirect("/clustertemplates", ("ok", f"Cluster template {row.name} is created."))


async def template_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Delete a template no cluster uses."""
    ident = request.path_params["ident"]
    await cluster_templates.delete(env_of(request), session.ctx, ident)
    return redirect(
        "/clustertemplates", ("ok", f"Cluster template {form.get('name') or ident} is deleted.")
    )
