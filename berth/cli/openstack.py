"""``berth openstack register``: put Berth into an existing cloud's Keystone.

Run once by the cloud's operator with Keystone admin credentials (the
openstack CLI's ``OS_*`` variables or ``OS_CLOUD``). It makes sure that
Keystone holds what Berth in ``identity_backend = keystone`` mode needs:

- the ``service`` role and the service project (``keystone_service_project``);
- Berth's service user (``keystone_service_username``, password
  ``keystone_service_password``) with the ``service`` role there: Berth
  validates tokens as that user;
- with ``agent_password`` set, the agents' user (``keystone_agent_username``),
  same role and project: standalone ``berth-agent`` processes log in as it;
- the ``container`` (Zun, ``<url>/container/v1``) and ``container-infra``
  (Magnum, ``<url>/container-infra/v1``) services with public, internal and
  admin endpoints in ``region``.

Idempotent: what exists and is right is left alone, a wrong endpoint URL or a
password that no longer works is corrected, and every line printed says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import typer

from berth.cli.credentials import Credentials, CredentialsError, load_credentials
from berth.identity import catalog
from berth.identity.auth_request import by_name, password_auth, project_ref

if TYPE_CHECKING:
    from berth.config import Settings

__all__ = ["Keystone", "RegisterError", "Registrar", "app", "register", "run_register"]

app = typer.Typer(help="Berth inside an OpenStack cloud: its place in the cloud's Keystone.")


class RegisterError(Exception):
    """Keystone refused a step; the message says which and why."""


@dataclass
class Keystone:
    """Admin calls to Keystone v3 (``url`` ends with /v3) with an admin token."""

    http: httpx.Client
    url: str
    token: str = ""

    def login(self, creds: Credentials) -> None:
        """Log in as the admin the credentials name (a project-scoped token)."""
        project = project_ref(creds.project_id, creds.project_name, creds.project_domain_name)
        body = password_auth(
            creds.username, creds.password, by_name(creds.user_domain_name), project
        )
        r = self.http.post(f"{self.url}/auth/tokens", json=body)
        if r.status_code != 201:
            raise RegisterError(f"Keystone refused the admin login ({r.status_code}): {r.text}")
        self.token = r.headers["x-subject-token"]

    def can_login(self, name: str, domain_id: str, password: str) -> bool:
        """Whether ``name`` in ``domain_id`` can log in with ``password`` (unscoped)."""
        body = password_auth(name, password, {"id": domain_id})
        return self.http.post(f"{self.url}/auth/tokens", json=body).status_code == 201

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        r = self.http.request(
            method, f"{self.url}{path}", headers={"X-Auth-Token": self.token}, **kwargs
        )
        if r.status_code >= 400:
            raise RegisterError(f"{method} {path}: Keystone answered {r.status_code}: {r.text}")
        body: dict[str, Any] = r.json() if r.content else {}
        return body

    def find(self, collection: str, **query: str) -> dict[str, Any] | None:
        """The one entry of ``collection`` matching ``query``, or None."""
        found = self.call("GET", f"/{collection}", params=query)[collection]
        return dict(found[0]) if found else None


class Registrar:
    """The steps of ``register``, each saying what it found and did."""

    def __init__(self, ks: Keystone, say: Any) -> None:
        self.ks, self.say, self.changed = ks, say, 0

    def made(self, what: str) -> None:
        self.changed += 1
        self.say(f"created {what}")

    def domain_id(self, name: str) -> str:
        found = self.ks.find("domains", name=name)
        if found is None:
            raise RegisterError(f"domain {name} does not exist in Keystone")
        return str(found["id"])

    def role(self, name: str) -> str:
        found = self.ks.find("roles", name=name)
        if found is not None:
            self.say(f"role {name} exists")
            return str(found["id"])
        self.made(f"role {name}")
        return str(self.ks.call("POST", "/roles", json={"role": {"name": name}})["role"]["id"])

    def project(self, name: str, domain_id: str) -> str:
        found = self.ks.find("projects", name=name, domain_id=domain_id)
        if found is not None:
            self.say(f"project {name} exists")
            return str(found["id"])
        body = {"project": {"name": name, "domain_id": domain_id, "description": "services"}}
        self.made(f"project {name}")
        return str(self.ks.call("POST", "/projects", json=body)["project"]["id"])

    def user(self, name: str, password: str, domain_id: str, project_id: str) -> str:
        found = self.ks.find("users", name=name, domain_id=domain_id)
        if found is None:
            body = {
                "user": {
                    "name": name,
                    "password": password,
                    "domain_id": domain_id,
                    "default_project_id": project_id,
                    "enabled": True,
                }
            }
            self.made(f"user {name}")
            return str(self.ks.call("POST", "/users", json=body)["user"]["id"])
        user_id = str(found["id"])
        if self.ks.can_login(name, domain_id, password):
            self.say(f"user {name} exists (its password works)")
        else:
            self.ks.call("PATCH", f"/users/{user_id}", json={"user": {"password": password}})
            self.changed += 1
            self.say(f"user {name} exists: its password was set to the configured one")
        return user_id

    def grant(self, user: str, user_id: str, project_id: str, role: str, role_id: str) -> None:
        path = f"/projects/{project_id}/users/{user_id}/roles/{role_id}"
        r = self.ks.http.head(f"{self.ks.url}{path}", headers={"X-Auth-Token": self.ks.token})
        if r.status_code == 204:
            self.say(f"user {user} holds role {role}")
            return
        self.ks.call("PUT", path)
        self.changed += 1
        self.say(f"granted role {role} to user {user}")

    def service(self, entry: catalog.CatalogService) -> str:
        found = self.ks.find("services", type=entry.type)
        if found is not None:
            self.say(f"service {entry.type} ({found.get('name')}) exists")
            return str(found["id"])
        body = {"service": {"type": entry.type, "name": entry.name, "enabled": True}}
        self.made(f"service {entry.type} ({entry.name})")
        return str(self.ks.call("POST", "/services", json=body)["service"]["id"])

    def endpoint(self, service_id: str, what: str, interface: str, url: str, region: str) -> None:
        found = self.ks.call(
            "GET", "/endpoints", params={"service_id": service_id, "interface": interface}
        )["endpoints"]
        mine = [e for e in found if e.get("region_id") in (region, None)]
        if mine and mine[0]["url"] == url:
            self.say(f"endpoint {what} {interface} {url} exists")
            return
        if mine:
            change = {"endpoint": {"url": url, "region_id": region}}
            self.ks.call("PATCH", f"/endpoints/{mine[0]['id']}", json=change)
            self.changed += 1
            self.say(f"endpoint {what} {interface}: {mine[0]['url']} -> {url}")
            return
        body: dict[str, Any] = {
            "endpoint": {
                "service_id": service_id,
                "interface": interface,
                "url": url,
                "region_id": region,
                "enabled": True,
            }
        }
        self.ks.call("POST", "/endpoints", json=body)
        self.made(f"endpoint {what} {interface} {url}")


def _ensure_region(r: Registrar, region: str) -> None:
    got = r.ks.http.get(f"{r.ks.url}/regions/{region}", headers={"X-Auth-Token": r.ks.token})
    if got.status_code == 200:
        return
    r.ks.call("POST", "/regions", json={"region": {"id": region}})
    r.made(f"region {region}")


def run_register(
    ks: Keystone, settings: Settings, urls: dict[str, str], say: Any, agent_password: str | None
) -> int:
    """Bring Keystone to what Berth needs; return how many things changed."""
    if not settings.keystone_service_password:
        raise RegisterError(
            "set BERTH_KEYSTONE_SERVICE_PASSWORD (Berth's service user's password in Keystone)"
        )
    r = Registrar(ks, say)
    role_id = r.role("service")
    user_domain = r.domain_id(settings.keystone_service_user_domain)
    project_id = r.project(
        settings.keystone_service_project, r.domain_id(settings.keystone_service_project_domain)
    )
    users = [(settings.keystone_service_username, settings.keystone_service_password)]
    if agent_password:
        users.append((settings.keystone_agent_username, agent_password))
    for name, password in users:
        user_id = r.user(name, password, user_domain, project_id)
        r.grant(name, user_id, project_id, "service", role_id)
    _ensure_region(r, settings.region)
    for entry in (catalog.CONTAINER, catalog.CONTAINER_INFRA):
        service_id = r.service(entry)
        for interface, base in urls.items():
            url = f"{base.rstrip('/')}/{entry.path}"
            r.endpoint(service_id, entry.type, interface, url, settings.region)
    return r.changed


@app.command()
def register(
    public_url: str = typer.Option(
        None, help="Berth's URL as users reach it (default: the settings' public_url)"
    ),
    internal_url: str = typer.Option(None, help="Berth's URL inside the cloud (default: public)"),
    admin_url: str = typer.Option(None, help="Berth's admin URL (default: public)"),
) -> None:
    """Create Berth's service users, services and endpoints in the cloud's Keystone.

    Admin credentials come from OS_* (or OS_CLOUD); what to create from Berth's
    settings (BERTH_KEYSTONE_*, BERTH_AGENT_PASSWORD, BERTH_REGION). A second
    run changes nothing and says so.
    """
    from berth.config import load_settings  # ~160 ms: only this command needs the settings

    settings = load_settings()
    try:
        creds = load_credentials()
    except CredentialsError as exc:
        raise typer.BadParameter(str(exc)) from exc
    public = public_url or settings.effective_public_url
    urls = {"public": public, "internal": internal_url or public, "admin": admin_url or public}
    with httpx.Client(timeout=30.0) as http:
        ks = Keystone(http, creds.identity_url)
        try:
            ks.login(creds)
            changed = run_register(ks, settings, urls, typer.echo, settings.agent_password)
        except (RegisterError, httpx.HTTPError) as exc:
            typer.echo(f"berth openstack register: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(
        f"{changed} change(s) made in Keystone" if changed else "nothing to change: all in place"
    )
