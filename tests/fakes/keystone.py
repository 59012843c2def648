"""A small in-memory Keystone: the two calls Berth makes (its service user's login and
``GET /v3/auth/tokens``), answered as Keystone answers them, for fast tests; the real
Keystone is driven by tests/compat/test_openstack_keystone.py."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx

__all__ = ["KS", "FakeKeystone", "token_body"]

KS = "http://keystone.test:5000"


def token_body(
    roles: list[str],
    *,
    user: str = "alice",
    user_domain: tuple[str, str] = ("default", "Default"),
    project: str | None = "p1",
    expires_in: float = 3600,
) -> dict[str, Any]:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)
    token: dict[str, Any] = {
        "user": {
            "id": f"{user}-id",
            "name": user,
            "domain": {"id": user_domain[0], "name": user_domain[1]},
        },
        "roles": [{"id": f"{r}-id", "name": r} for r in roles],
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "audit_ids": ["audit-1"],
    }
    if project:
        token["project"] = {"id": project, "name": f"{project}-name", "domain": {"id": "d7"}}
    return {"token": token}


class FakeKeystone:
    """Answers Berth's two calls: the service user's login and token validation."""

    SERVICE_PASSWORD = "svc-pw"

    def __init__(self) -> None:
        self.valid: dict[str, dict[str, Any]] = {}
        self.logins = 0
        self.validations = 0
        self.service_tokens: set[str] = set()
        self.down = False
        self.status: int | None = None  # forced answer to validations

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "POST":
            self.logins += 1
            body = json.loads(request.content)
            user = body["auth"]["identity"]["password"]["user"]
            if user["password"] != self.SERVICE_PASSWORD:
                return httpx.Response(401, json={"error": {"code": 401}})
            service = f"service-{self.logins}"
            self.service_tokens.add(service)
            return httpx.Response(
                201,
                headers={"X-Subject-Token": service},
                json=token_body(["service"], user="berth"),
            )
        self.validations += 1
        if request.headers.get("x-auth-token") not in self.service_tokens:
            return httpx.Response(401, json={"error": {"code": 401}})
        if self.status is not None:
            return httpx.Response(self.status, text="boom")
        found = self.valid.get(request.headers.get("x-subject-token", ""))
        if found is None:
            return httpx.Response(404, json={"error": {"code": 404}})
        return httpx.Response(200, json=found)
