"""The web dashboard: server-rendered pages over ``berth.services``, mounted at ``/``.

Words: a *session* is a browser holding a project-scoped Keystone token in an
HttpOnly cookie; a *page* is a whole HTML document; a *fragment* is the piece
of a page that htmx polls (container status, the events timeline).

Flow: ``router`` maps a path to a handler wrapped by ``pages`` (session,
CSRF, errors → pages or flash messages); handlers call the use cases in
``berth.services`` with the session's RequestContext and render a template
from ``templates/`` through ``render``. Static files (htmx, vendored by
``scripts/fetch-assets``, and our CSS/JS) are served from ``static/``.
"""

from berth.dashboard.router import build_router

__all__ = ["build_router"]
