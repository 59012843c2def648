"""Where the CLI's credentials come from: the openstack CLI's ``OS_*`` variables or clouds.yaml.

``OS_CLOUD`` names an entry of ``clouds.yaml`` (looked for in the current
directory, ``~/.config/openstack/`` and ``/etc/openstack/``, as openstacksdk
does); ``OS_*`` variables override what the entry says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CLOUDS_YAML_PATHS", "Credentials", "CredentialsError", "load_credentials"]

CLOUDS_YAML_PATHS = (
    Path("clouds.yaml"),
    Path.home() / ".config" / "openstack" / "clouds.yaml",
    Path("/etc/openstack/clouds.yaml"),
)

_HOW = (
    "source .berth/admin-openrc (written by ./scripts/up), or set OS_AUTH_URL, OS_USERNAME, "
    "OS_PASSWORD and OS_PROJECT_NAME, or OS_CLOUD naming a clouds.yaml entry"
)


class CredentialsError(Exception):
    """The credentials are missing or unreadable; the message says how to provide them."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the CLI authenticates with, as keystoneauth's password plugin takes it."""

    auth_url: str
    username: str
    password: str
    project_name: str | None = None
    project_id: str | None = None
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"

    @property
    def identity_url(self) -> str:
        """The Keystone v3 base URL (``.../identity/v3``), whether or not ``/v3`` was given."""
        url = self.auth_url.rstrip("/")
        return url if url.endswith("/v3") else f"{url}/v3"

    @property
    def base_url(self) -> str:
        """Berth's base URL: the identity URL without ``/identity/v3``."""
        url = self.identity_url.removesuffix("/v3")
        return url.removesuffix("/identity")


_KEYS = {
    "auth_url": "OS_AUTH_URL",
    "username": "OS_USERNAME",
    "password": "OS_PASSWORD",
    "project_name": "OS_PROJECT_NAME",
    "project_id": "OS_PROJECT_ID",
    "user_domain_name": "OS_USER_DOMAIN_NAME",
    "project_domain_name": "OS_PROJECT_DOMAIN_NAME",
}


def _cloud(name: str, paths: tuple[Path, ...]) -> dict[str, Any]:
    for path in paths:
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CredentialsError(f"cannot read {path}: {exc}") from exc
        clouds = data.get("clouds") if isinstance(data, dict) else None
        if isinstance(clouds, dict) and isinstance(clouds.get(name), dict):
            auth = clouds[name].get("auth") or {}
            return {k: str(v) for k, v in auth.items() if k in _KEYS and v is not None}
    looked = ", ".join(str(p) for p in paths)
    raise CredentialsError(f"OS_CLOUD={name} but no clouds.yaml defines it (looked in {looked})")


def load_credentials(
    environ: Mapping[str, str] | None = None, paths: tuple[Path, ...] = CLOUDS_YAML_PATHS
) -> Credentials:
    """Credentials from ``environ`` (default: the process environment) and clouds.yaml."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    if env.get("OS_CLOUD"):
        values.update(_cloud(env["OS_CLOUD"], paths))
    values.update({key: env[var] for key, var in _KEYS.items() if env.get(var)})
    missing = [_KEYS[k] for k in ("auth_url", "username", "password") if not values.get(k)]
    if missing:
        raise CredentialsError(f"{', '.join(missing)} not set: {_HOW}.")
    if not values.get("project_name") and not values.get("project_id"):
        raise CredentialsError(f"OS_PROJECT_NAME not set: {_HOW}.")
    return Credentials(**values)
