"""Capsules (Zun's pods): the list with each member's live status, create from a template,
delete. Through ``berth.services.containers.capsules`` with the session's context
(``capsule:*``)."""

from __future__ import annotations

import asyncio
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.dashboard.pages import explain, redirect
from berth.dashboard.render import env_of, fragment, page, permissions
from berth.dashboard.session import Flash, Session
from berth.services.containers import capsules

__all__ = ["capsule_create", "capsule_delete", "capsule_rows", "capsules_page"]

_MAX_TEMPLATE = 32 * 1024
EXAMPLE = """kind: capsule
metadata:
  name: web-pod
spec:
  containers:
  - name: web
    image: berth-test/busybox:latest
    command: [sh, -c, "echo hello from the pod; sleep 3600"]
    resources:
      requests: {cpu: 0.1, memory: 32}
"""


async def _rows(request: Request, session: Session) -> dict[str, Any]:
    found, _ = await capsules.list_capsules(env_of(request), session.ctx, False)
    rows = []
    for capsule, members in found:
        status, reason = capsules.status_of(capsule, members)
        rows.append((capsule, status, reason, members))
    rows.sort(key=lambda r: r[0].created_at, reverse=True)
    return {"capsules": rows, "csrf": session.csrf, "can": permissions(request, session)}


async def capsules_page(request: Request, session: Session) -> Response:
    """The project's capsules (refreshed every three seconds) and the create form."""
    return await page(
        request, "capsules.html", session, template_text=EXAMPLE, **await _rows(request, session)
    )


async def capsule_rows(request: Request, session: Session) -> Response:
    """The table body alone, for htmx polling."""
    return fragment("capsule_rows.html", **await _rows(request, session))


class _TooDeep(yaml.composer.ComposerError):
    """A template nested deeper than the bound."""


class _TemplateLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a bound on nesting: it composes nodes recursively, and
    16,000 nested ``[`` (16 KB) took 0.7 s to end in a RecursionError (a 500)."""

    max_depth = 32
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _TooDeep(None, None, f"it nests deeper than {self.max_depth} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse(text: str, max_depth: int = 32) -> Any:
    """The template as the stock client sends it: YAML (JSON is YAML too), nested at
    most ``max_depth`` levels (as a JSON body's ``max_json_depth``)."""
    if not text.strip():
        raise errors.Invalid("Paste a capsule template (YAML), like the example.")
    if len(text) > _MAX_TEMPLATE:
        raise errors.Invalid("The template is too large (32 KiB at most).")
    loader = None
    try:
        loader = _TemplateLoader(text)  # refuses a NUL or another unprintable character
        loader.max_depth = max_depth
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        why = f": {exc.problem}" if isinstance(exc, _TooDeep) else ""
        raise errors.Invalid(
            f"The template is not valid YAML{line}{why}: fix it and try again."
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


async def capsule_create(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Create from the template; a mistake brings the form back with it and the reason."""
    text = form.get("template", "")
    try:
        env = env_of(request)
        # Off the event loop: PyYAML is pure Python (32 KiB of it, ~0.1 s at worst).
        template = await asyncio.to_thread(parse, text, env.settings.max_json_depth)
        row = await capsules.create(env, session.ctx, template)
    except errors.Unauthorized:
        raise
    except errors.BerthError as exc:
        return await page(
            request,
            "capsules.html",
            session,
            status=403 if isinstance(exc, errors.Forbidden) else 400,
            flash=Flash("error", explain(exc, session)),
            template_text=text,
            **await _rows(request, session),
        )
    return redirect("/capsules", ("ok", f"Capsule {row.name} is being created."))


async def capsule_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    ident = request.path_params["ident"]
    await capsules.delete(env_of(request), session.ctx, ident, False)
    return redirect("/capsules", ("ok", f"Deleting capsule {form.get('name') or ident}."))
