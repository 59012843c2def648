"""Synchronous calls from the control plane to the agent that runs a container."""

from __future__ import annotations

from typing import Any

import httpx

from berth import errors

__all__ = ["AgentCalls", "error_for"]


class AgentCalls:
    """Reaches agents over HTTP, or in memory for an agent embedded in this process."""

    def __init__(self, api_key: str, timeout: float = 60.0) -> None:
        self.api_key = api_key
        self.timeout = timeout
        self.local: dict[str, httpx.AsyncBaseTransport] = {}

    async def call(
        self,
        hostname: str,
        agent_url: str | None,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
        accept: str | None = None,
        content: tuple[bytes, str] | None = None,
    ) -> Any:
        """Call ``path`` on the host's agent and return its JSON; domain errors on failure.

        ``timeout`` (seconds) replaces the default for slow calls such as pulls.
        ``accept``: the media type asked for; the answer is then the ``httpx.Response``
        (whatever type the agent chose), not its JSON. ``content``: a body that is not
        JSON, with its media type (instead of ``json``).
        """
        transport = self.local.get(hostname)
        base = "http://agent" if transport else agent_url
        if base is None:
            raise errors.HostUnavailable(f"Host {hostname} has no agent address registered.")
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if accept is not None:
            headers["Accept"] = accept
        body: dict[str, Any] = {"json": json}
        if content is not None:
            body = {"content": content[0]}
            headers["Content-Type"] = content[1]
        try:
            async with httpx.AsyncClient(
                transport=transport,
                base_url=base,
                timeout=timeout or self.timeout,
                headers=headers,
            ) as client:
                resp = await client.request(method, path, params=params, **body)
        except httpx.HTTPError as exc:
            raise errors.HostUnavailable(
                f"The agent on host {hostname} did not answer ({exc.__class__.__name__}); "
                "check that berth-agent runs there."
            ) from exc
        if resp.status_code < 400:
            return resp if accept is not None else resp.json()
        raise error_for(resp.status_code, _message(resp, hostname), hostname)


def _message(resp: httpx.Response, hostname: str) -> str:
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text or f"agent on {hostname} answered {resp.status_code}"


def error_for(status: int, message: str, hostname: str) -> errors.BerthError:
    """The domain error for an agent's HTTP status (or a session's 4000 + status close)."""
    if status == 400:
        return errors.Invalid(message)
    if status == 404:
        return errors.ContainerNotFound(message)
    if status == 409:
        return errors.Conflict(message)
    return errors.HostUnavailable(f"The agent on host {hostname} failed: {message}")
