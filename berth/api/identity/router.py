"""The Keystone-v3-compatible identity API; the app mounts ``router`` at ``/identity``."""

from __future__ import annotations

from fastapi import APIRouter

from berth.api.identity import auth, domains, projects, roles, users

__all__ = ["router"]

router = APIRouter(tags=["identity"])
# The routes are copied rather than included: FastAPI refuses to include the
# root route ("") of discovery without a prefix, and the prefix comes from the app.
for _part in (auth, projects, users, roles, domains):
    router.routes.extend(_part.router.routes)
