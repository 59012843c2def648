"""Magnum response bodies: links, timestamps, templates and paginated collections."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import Request

from berth import errors
from berth.api.magnum.microversions import PREFIX
from berth.api.zun.microversions import APIVersion
from berth.domain.cluster_settings import ClusterSettings
from berth.services.clusters.templates import attributes
from berth.store.tables import ClusterRow, ClusterTemplateRow

__all__ = [
    "CLUSTER_SORT_KEYS",
    "NODEGROUP_SORT_KEYS",
    "TEMPLATE_SORT_KEYS",
    "app_url",
    "cluster_summary",
    "cluster_view",
    "iso",
    "links",
    "page",
    "template_view",
]


# The sort keys Magnum accepts are its table's columns (magnum/db/sqlalchemy/models.py,
# checked by _paginate_query in magnum/db/sqlalchemy/api.py); anything else is a 400.
_TIMESTAMPS = ("id", "created_at", "updated_at")
TEMPLATE_SORT_KEYS: Final = frozenset(
    (*_TIMESTAMPS, "uuid", "project_id", "user_id", "name", "image_id", "flavor_id",
     "master_flavor_id", "keypair_id", "external_network_id", "fixed_network", "fixed_subnet",
     "network_driver", "volume_driver", "dns_nameserver", "apiserver_port", "docker_volume_size",
     "docker_storage_driver", "cluster_distro", "coe", "http_proxy", "https_proxy", "no_proxy",
     "registry_enabled", "labels", "tls_disabled", "public", "server_type", "insecure_registry",
     "master_lb_enabled", "floating_ip_enabled", "hidden", "tags", "driver")
)
CLUSTER_SORT_KEYS: Final = frozenset(
    (*_TIMESTAMPS, "project_id", "user_id", "uuid", "name", "cluster_template_id", "keypair",
     "docker_volume_size", "labels", "master_flavor_id", "flavor_id", "stack_id", "api_address",
     "status", "status_reason", "health_status", "health_status_reason", "create_timeout",
     "discovery_url", "coe_version", "container_version", "ca_cert_ref", "magnum_cert_ref",
     "etcd_ca_cert_ref", "front_proxy_ca_cert_ref", "fixed_network", "fixed_subnet",
     "floating_ip_enabled", "master_lb_enabled")
)
NODEGROUP_SORT_KEYS: Final = frozenset(
    (*_TIMESTAMPS, "uuid", "name", "cluster_id", "project_id", "docker_volume_size", "labels",
     "flavor_id", "image_id", "node_addresses", "node_count", "role", "max_node_count",
     "min_node_count", "is_default", "stack_id", "status", "status_reason", "version",
     "node_labels", "node_taints")
)


def app_url(request: Request) -> str:
    """``<base>/container-infra``: what Magnum calls the application URL.

    The request's base keeps any ``root_path`` a proxy mounts Berth under.
    """
    return str(request.base_url).rstrip("/") + PREFIX


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 with an offset, as wsme renders datetimes."""
    return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else None


def links(base: str, resource: str, ident: str) -> list[dict[str, str]]:
    """The self and bookmark links of one resource."""
    return [
        {"href": f"{base}/v1/{resource}/{ident}", "rel": "self"},
        {"href": f"{base}/{resource}/{ident}", "rel": "bookmark"},
    ]


def template_view(request: Request, row: ClusterTemplateRow) -> dict[str, Any]:
    """A full ClusterTemplate (the CLI needs ``links``)."""
    return {
        **attributes(row),
        "uuid": row.uuid,
        "project_id": row.project_id,
        "user_id": row.user_id,
        "links": links(app_url(request), "clustertemplates", row.uuid),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def _sort_value(item: dict[str, Any], key: str) -> tuple[int, float, str]:
    value = item.get(key)
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, value if isinstance(value, str) else repr(value))


def page(
    request: Request,
    items: Sequence[dict[str, Any]],
    plural: str,
    resource: str,
    *,
    marker_key: str = "uuid",
    sort_keys: frozenset[str] | None = None,
) -> dict[str, Any]:
    """A Magnum collection: sort_key/sort_dir, marker (a uuid), limit and the ``next`` URL.

    ``sort_keys``: the keys Magnum sorts that collection by; others are a 400 even
    when the page is empty. None: any attribute of the items.
    """
    q = request.query_params
    sort_key, sort_dir = q.get("sort_key", "id"), q.get("sort_dir", "asc")
    if sort_dir not in ("asc", "desc"):
        raise errors.Invalid(
            f"Invalid sort direction: {sort_dir}. Acceptable values are 'asc' or 'desc'"
        )
    unknown = sort_key not in sort_keys if sort_keys is not None else bool(items) and (
        sort_key != "id" and sort_key not in items[0]
    )
    if unknown:
        raise errors.Invalid(f'The sort_key value "{sort_key}" is an invalid field for sorting')
    rows = list(items)  # already in id order
    if sort_key != "id":
        rows.sort(key=lambda i: _sort_value(i, sort_key))
    if sort_dir == "desc":
        rows.reverse()
    marker = q.get("marker")
    if marker:
        at = [i for i, item in enumerate(rows) if str(item.get(marker_key)) == marker]
        if not at:
            raise errors.NotFound(f"Marker {marker} could not be found.")
        rows = rows[at[0] + 1 :]
    limit_text = q.get("limit")
    limit = 1000
    if limit_text is not None:
        try:
            limit = int(limit_text)
        except ValueError:
            raise errors.Invalid(f"Invalid limit: {limit_text}") from None
        if limit <= 0:
            raise errors.Invalid("Limit must be positive")
        limit = min(limit, 1000)
    rows = rows[:limit]
    body: dict[str, Any] = {plural: rows}
    if rows and len(rows) == limit:
        query = urlencode(
            {
                "sort_key": sort_key,
                "sort_dir": sort_dir,
                "limit": limit,
                "marker": rows[-1][marker_key],
            }
        )
        body["next"] = f"{app_url(request)}/v1/{resource}?{query}"
    return body


_SUMMARY = (
    "keypair",
    "node_count",
    "master_count",
    "docker_volume_size",
    "labels",
    "master_flavor_id",
    "flavor_id",
    "create_timeout",
    "health_status",
)
_DETAIL = (
    *_SUMMARY,
    "discovery_url",
    "fixed_network",
    "fixed_subnet",
    "floating_ip_enabled",
    "master_lb_enabled",
    "api_address",
    "node_addresses",
    "master_addresses",
    "coe_version",
    "container_version",
    "health_status_reason",
)


def cluster_summary(request: Request, row: ClusterRow, version: APIVersion) -> dict[str, Any]:
    """A cluster as ``GET /v1/clusters`` lists it."""
    return _cluster(request, row, version, _SUMMARY)


def cluster_view(
    request: Request, row: ClusterRow, version: APIVersion, *, faults: bool = False
) -> dict[str, Any]:
    """A full cluster: ``stack_id`` below 1.13, ``cluster_id`` from 1.13; faults when failed."""
    body = _cluster(request, row, version, _DETAIL)
    body["status_reason"] = row.status_reason
    body["merge_labels"] = False
    body["user_id"] = row.user_id
    settings = ClusterSettings.from_json(row.attrs)
    template_labels = dict(settings.template_labels)
    labels = dict(settings.labels)
    body["labels_overridden"] = {
        k: v for k, v in template_labels.items() if k in labels and labels[k] != v
    }
    body["labels_added"] = {k: v for k, v in labels.items() if k not in template_labels}
    body["labels_skipped"] = {k: v for k, v in template_labels.items() if k not in labels}
    if faults:
        failed = row.status.endswith("_FAILED")
        body["faults"] = {"default-worker": row.status_reason} if failed else {}
    return body


def _cluster(
    request: Request, row: ClusterRow, version: APIVersion, fields: tuple[str, ...]
) -> dict[str, Any]:
    settings = ClusterSettings.from_json(row.attrs)
    body: dict[str, Any] = {
        "uuid": row.uuid,
        "name": row.name,
        "cluster_template_id": row.cluster_template_id,
        "status": row.status,
        "project_id": row.project_id,
        "links": links(app_url(request), "clusters", row.uuid),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        **{name: settings.stored(name) for name in fields},
    }
    body["cluster_id" if version >= APIVersion(1, 13) else "stack_id"] = row.uuid
    return body
