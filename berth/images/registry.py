"""A small client of the OCI distribution API (``/v2/``): what Berth needs of a registry.

It lists catalogs and tags, uploads blobs and manifests, and deletes
manifests. Authentication: HTTP basic (``docker-registry`` with htpasswd) or
the bearer-token dance of hosted registries. Loopback registries are reached
over plain HTTP (as Docker does), others over HTTPS.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from berth import errors
from berth.images.refs import is_loopback

__all__ = ["MANIFEST_V2", "RegistryClient"]

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
_ACCEPT = ", ".join(
    [
        MANIFEST_V2,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_CHUNK = 1024 * 1024


class RegistryClient:
    """One registry at ``address`` (``host[:port]``), with optional credentials."""

    def __init__(
        self,
        address: str,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.address = address
        scheme = "http" if is_loopback(address) else "https"
        self._auth = httpx.BasicAuth(username, password or "") if username else None
        self._http = httpx.AsyncClient(
            base_url=f"{scheme}://{address}", timeout=timeout, transport=transport
        )
        self._token: str | None = None

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the connections."""
        await self._http.aclose()

    # -- reading

    async def catalog(self, limit: int = 1000) -> list[str]:
        """Every repository the credentials may list (one page of ``limit``)."""
        body = await self._json("GET", f"/v2/_catalog?n={limit}", scope="registry:catalog:*")
        return [str(r) for r in body.get("repositories") or []]

    async def tags(self, repo: str) -> list[str]:
        """The tags of ``repo``; empty when the repository does not exist."""
        resp = await self._request("GET", f"/v2/{repo}/tags/list", scope=_pull(repo))
        if resp.status_code == 404:
            return []
        _check(resp, f"list the tags of {repo}")
        return [str(t) for t in resp.json().get("tags") or []]

    async def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest ``repo:reference`` points at, or None when there is none."""
        resp = await self._request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", scope=_pull(repo), accept=_ACCEPT
        )
        if resp.status_code == 404:
            return None
        _check(resp, f"look up {repo}:{reference}")
        digest = resp.headers.get("docker-content-digest")
        return str(digest) if digest else None

    # -- writing

    async def blob_exists(self, repo: str, digest: str) -> bool:
        resp = await self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=_push(repo))
        return resp.status_code == 200

    async def upload_blob(self, repo: str, digest: str, path: Path) -> None:
        """Upload the file at ``path`` as blob ``digest`` (skipped when already there)."""
        await self._upload(repo, digest, _read_chunks(path), "a layer")

    async def upload_bytes(self, repo: str, digest: str, data: bytes) -> None:
        """Upload ``data`` as blob ``digest`` (skipped when already there)."""
        await self._upload(repo, digest, data, "a blob")

    async def _upload(
        self, repo: str, digest: str, content: bytes | AsyncIterator[bytes], what: str
    ) -> None:
        """A monolithic blob upload: POST for a location, one PUT with the digest."""
        if await self.blob_exists(repo, digest):
            return
        start = await self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=_push(repo))
        _check(start, f"start an upload to {repo}", expect=(202,))
        location = start.headers["location"]
        sep = "&" if "?" in location else "?"
        resp = await self._request(
            "PUT",
            f"{location}{sep}digest={digest}",
            scope=_push(repo),
            content=content,
            headers={"Content-Type": "application/octet-stream"},
        )
        _check(resp, f"upload {what} to {repo}", expect=(201,))

    async def put_manifest(self, repo: str, tag: str, manifest: bytes) -> str:
        """Store ``manifest`` (schema 2) as ``repo:tag``; return its digest."""
        resp = await self._request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            scope=_push(repo),
            content=manifest,
            headers={"Content-Type": MANIFEST_V2},
        )
        _check(resp, f"store the manifest of {repo}:{tag}", expect=(201,))
        return str(resp.headers.get("docker-content-digest", ""))

    async def delete(self, repo: str, tag: str) -> bool:
        """Delete the manifest ``repo:tag`` points at; False when it did not exist."""
        digest = await self.manifest_digest(repo, tag)
        if digest is None:
            return False
        resp = await self._request("DELETE", f"/v2/{repo}/manifests/{digest}", scope=_push(repo))
        if resp.status_code == 404:
            return False
        _check(resp, f"delete {repo}:{tag}", expect=(202,))
        return True

    # -- plumbing

    async def _json(self, method: str, path: str, *, scope: str) -> dict[str, Any]:
        resp = await self._request(method, path, scope=scope)
        _check(resp, f"{method} {path}")
        data = resp.json()
        return data if isinstance(data, dict) else {}

    async def _request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        accept: str | None = None,
        headers: dict[str, str] | None = None,
        content: Any = None,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        if accept:
            hdrs["Accept"] = accept
        retry_body = content if isinstance(content, bytes | None) else None
        try:
            resp = await self._send(method, url, hdrs, content)
            if resp.status_code == 401 and self._token is None:
                challenge = resp.headers.get("www-authenticate", "")
                if challenge.lower().startswith("bearer ") and await self._login(challenge, scope):
                    resp = await self._send(method, url, hdrs, retry_body)
        except httpx.HTTPError as exc:
            raise errors.HostUnavailable(
                f"the registry {self.address} does not answer ({exc.__class__.__name__}): "
                "check its address and that it runs"
            ) from exc
        return resp

    async def _send(
        self, method: str, url: str, headers: dict[str, str], content: Any
    ) -> httpx.Response:
        if self._token:
            headers = {**headers, "Authorization": f"Bearer {self._token}"}
            return await self._http.request(method, url, headers=headers, content=content)
        auth = self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT
        return await self._http.request(method, url, headers=headers, content=content, auth=auth)

    async def _login(self, challenge: str, scope: str) -> bool:
        """Hosted registries: trade the credentials for a bearer token at the realm."""
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            return False
        params.setdefault("scope", scope)
        auth = self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT
        resp = await self._http.get(realm, params=params, auth=auth)
        if resp.status_code != 200:
            return False
        body = resp.json()
        self._token = str(body.get("token") or body.get("access_token") or "") or None
        return self._token is not None


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _check(resp: httpx.Response, what: str, expect: tuple[int, ...] = (200,)) -> None:
    if resp.status_code in expect:
        return
    detail = resp.text.strip()[:300] or resp.reason_phrase
    if resp.status_code in (401, 403):
        raise errors.Forbidden(f"the registry refused to {what}: access denied ({detail})")
    if resp.status_code == 404:
        raise errors.NotFound(f"the registry could not {what}: not found ({detail})")
    raise errors.HostUnavailable(f"the registry failed to {what} ({resp.status_code}: {detail})")
