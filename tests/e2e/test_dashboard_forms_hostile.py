"""Every form of the dashboard, every field, hostile values: never a 5xx.

The crawl starts from the dashboard's pages as the admin (who sees every form),
follows the dashboard's own links, and posts each form found once per field and
hostile value, the other fields as the page filled them. Found this way (each was
a 500 on PostgreSQL, or an exception out of the app): a NUL in an admin service's
host, binary or reason, in a security-group rule's remote group, or in a
container's image; an image of 5,000 characters; a capsule template holding a NUL.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.e2e.test_dashboard_http import login
from tests.helpers import ZUN, ScriptedAgent

pytestmark = pytest.mark.e2e

HOSTILE = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b[2J",
    "\r\n",
    "-1",
    "0",
    "1e999",
    "nan",
    "9" * 40,
    "١٢",  # Arabic-Indic digits: int() takes them
    "../../etc/passwd",
    "[" * 5000,
    "<script>x</script>",
    "a=b\n" * 500,
    "'\"",
    "%",
    "\\",
    "x" * 60_000,
]
START = [
    "/containers",
    "/containers/new",
    "/images",
    "/registries",
    "/clusters",
    "/clusters/new",
    "/clustertemplates",
    "/capsules",
    "/networks",
    "/security_groups",
    "/volumes",
    "/admin/services",
]
_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_FIELD = re.compile(r"<(?:input|textarea|select)\b[^>]*>", re.I)
_SELECT = re.compile(r"<select\b([^>]*)>(.*?)</select>", re.S | re.I)


def _attr(tag: str, name: str) -> str | None:
    found = re.search(rf'\b{name}="([^"]*)"', tag)
    return html.unescape(found.group(1)) if found else None


def post_forms(page: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(action, fields as the page fills them) of each POST form of ``page``."""
    for attrs, body in _FORM.findall(page):
        if (_attr(attrs, "method") or "get").lower() != "post":
            continue
        fields: dict[str, str] = {}
        for tag in _FIELD.findall(body):
            if name := _attr(tag, "name"):
                fields.setdefault(name, _attr(tag, "value") or "")
        for select, options in _SELECT.findall(body):
            first = re.search(r'value="([^"]*)"', options)
            if (name := _attr(select, "name")) and first:
                fields[name] = html.unescape(first.group(1))
        yield _attr(attrs, "action") or "", fields


async def _crawl(client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    seen: set[str] = set()
    todo, forms = list(START), {}
    while todo and len(seen) < 100:
        url = todo.pop(0)
        if url in seen:
            continue
        seen.add(url)
        r = await client.get(url)
        assert r.status_code < 500, (url, r.status_code)
        if r.status_code != 200 or "text/html" not in r.headers.get("content-type", ""):
            continue
        todo += [u for u in re.findall(r'href="(/[^"#?]*)"', r.text) if not u.startswith("/static")]
        for action, fields in post_forms(r.text):
            # Not the ones that end the session or remove what the crawl stands on.
            if not any(word in action for word in ("logout", "delete", "/project")):
                forms.setdefault(action, fields)
    return forms


async def test_every_form_and_field_answers_hostile_values_without_a_5xx(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    h = {"X-Auth-Token": admin_token, **ZUN}
    body = {"name": "c1", "image": "berth-test/busybox"}
    assert (await client.post("/container/v1/containers", json=body, headers=h)).status_code == 202
    await login(client, "admin", ADMIN_PASSWORD, "admin")
    forms = await _crawl(client)
    # The forms this must reach (a crawl that found none would prove nothing).
    for action in ("/containers/new", "/capsules/new", "/admin/services", "/volumes/new"):
        assert action in forms, sorted(forms)
    assert any(a.endswith("/rules") for a in forms) and any(a.endswith("/action") for a in forms)
    answered = 0
    for action, fields in forms.items():
        for name in (n for n in fields if n != "csrf"):
            for value in HOSTILE:
                r = await client.post(action, data={**fields, name: value})
                assert r.status_code < 500, (action, name, value[:20], r.text[:300])
                answered += 1
    assert answered > 500
