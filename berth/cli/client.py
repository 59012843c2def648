"""A small synchronous client of Berth's HTTP API: Keystone password auth, then the Zun API.

It speaks HTTP only (the CLI never opens the database), so it works against
any Berth the ``openstack`` CLI works against. Every failure becomes a
``CliError`` whose message says what to do next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx

from berth.cli.credentials import Credentials
from berth.identity.auth_request import by_name, password_auth, project_ref

__all__ = [
    "INFRA_MICROVERSION",
    "MICROVERSION",
    "BerthClient",
    "CliError",
    "HttpFactory",
    "default_http",
]

MICROVERSION = "container 1.40"
INFRA_MICROVERSION = "container-infra latest"

# Makes the httpx.Client the CLI talks through (tests hand in one bound to an ASGI app).
HttpFactory = Callable[[], httpx.Client]


class CliError(Exception):
    """A failure to report to the user: ``message`` says what happened and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def default_http() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(60.0, connect=5.0))


def _detail(response: httpx.Response) -> str:
    """The human message of a Zun or Keystone error body (or the raw text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        errs = body.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            return str(errs[0].get("detail") or errs[0].get("title") or body)
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("title") or body)
    return str(body)[:500]


class BerthClient:
    """An authenticated session with one Berth; use as a context manager."""

    def __init__(self, creds: Credentials, http: httpx.Client, *, owns_http: bool = True) -> None:
        self.creds = creds
        self.http = http
        self._owns_http = owns_http
        self.token = ""
        self.container_url = f"{creds.base_url}/container/v1"
        self.infra_url = f"{creds.base_url}/container-infra/v1"
        self.project_id = ""

    def __enter__(self) -> BerthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owns_http:
            self.http.close()

    def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            return self.http.request(method, url, **kw)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise CliError(
                f"cannot reach Berth at {self.creds.base_url} ({exc}): start it with ./scripts/up "
                "(or `berth up`), or point OS_AUTH_URL at a running Berth."
            ) from exc
        except httpx.TimeoutException as exc:
            raise CliError(
                f"Berth at {self.creds.base_url} did not answer in time: check "
                "`berth status` and its log (.berth/berth-api.log)."
            ) from exc
        except httpx.HTTPError as exc:
            raise CliError(f"talking to Berth at {self.creds.base_url} failed: {exc}") from exc

    def authenticate(self) -> None:
        """Get a project-scoped token and find the container endpoint in the catalog."""
        c = self.creds
        project = project_ref(c.project_id, c.project_name, c.project_domain_name)
        body = password_auth(c.username, c.password, by_name(c.user_domain_name), project)
        r = self._send("POST", f"{c.identity_url}/auth/tokens", json=body)
        if r.status_code == 401:
            raise CliError(
                f"authentication failed for user {c.username} in project "
                f"{c.project_name or c.project_id} at {c.identity_url}: check OS_USERNAME, "
                "OS_PASSWORD and OS_PROJECT_NAME (the user needs a role in that project)."
            )
        if r.status_code != 201:
            raise CliError(
                f"{c.identity_url} answered {r.status_code} to a login ({_detail(r)}): is "
                "OS_AUTH_URL Berth's identity URL (http://HOST:9517/identity/v3)?"
            )
        self.token = r.headers.get("x-subject-token", "")
        token = r.json().get("token", {})
        self.project_id = str((token.get("project") or {}).get("id", ""))
        for service in token.get("catalog") or []:
            if service.get("type") in ("container", "container-infra"):
                for ep in service.get("endpoints", []):
                    if ep.get("interface") == "public":
                        url = str(ep["url"]).rstrip("/")
                        url = url if url.endswith("/v1") else f"{url}/v1"
                        if service["type"] == "container":
                            self.container_url = url
                        else:
                            self.infra_url = url

    def call(self, method: str, path: str, *, what: str = "", **kw: Any) -> Any:
        """One container-API call; the decoded JSON body (None when empty)."""
        return self._call(self.container_url, MICROVERSION, method, path, what, "container", kw)

    def stream(self, path: str, *, what: str = "") -> Iterator[bytes]:
        """``GET path`` on the container API as it arrives (logs follow), until Berth ends it."""
        if not self.token:
            self.authenticate()
        headers = {"X-Auth-Token": self.token, "OpenStack-API-Version": MICROVERSION}
        timeout = httpx.Timeout(None, connect=5.0)
        try:
            with self.http.stream(
                "GET", f"{self.container_url}{path}", headers=headers, timeout=timeout
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    raise CliError(self._explain(r, what))
                yield from r.iter_raw()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise CliError(
                f"cannot reach Berth at {self.creds.base_url} ({exc}): start it with ./scripts/up "
                "(or `berth up`), or point OS_AUTH_URL at a running Berth."
            ) from exc
        except httpx.HTTPError as exc:
            raise CliError(f"the stream from Berth at {self.creds.base_url} broke: {exc}") from exc

    def call_infra(self, method: str, path: str, *, what: str = "", **kw: Any) -> Any:
        """One cluster-API (Magnum) call; the decoded JSON body (None when empty)."""
        return self._call(self.infra_url, INFRA_MICROVERSION, method, path, what, "cluster", kw)

    def _call(
        self, base: str, version: str, method: str, path: str, what: str, kind: str, kw: Any
    ) -> Any:
        if not self.token:
            self.authenticate()
        headers = {"X-Auth-Token": self.token, "OpenStack-API-Version": version}
        r = self._send(method, f"{base}{path}", headers=headers, **kw)
        if r.status_code >= 400:
            raise CliError(self._explain(r, what, kind))
        if not r.content:
            return None
        return r.json()

    def _explain(self, r: httpx.Response, what: str, kind: str = "container") -> str:
        detail = _detail(r)
        if r.status_code == 404 and what:
            return (
                f"{what} not found in project {self.creds.project_name or self.project_id}: "
                f"list them with `berth {kind} ls`."
            )
        if r.status_code == 403 and "Policy" in detail:
            return f"{detail} Your role in this project does not allow it: ask an admin."
        if r.status_code >= 500:
            return f"Berth failed ({r.status_code}): {detail} See its log (.berth/berth-api.log)."
        return detail
