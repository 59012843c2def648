"""Schemathesis against Berth's own OpenAPI: no generated request gets a 5xx.

Every operation of the three APIs (and the internal one) is called with
generated path, query and body values, once with the admin's token and once
with a member's, through the real app (lifespan, SQLite). Bad input must be a
4xx; the examples per operation are bounded to keep the module short.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

pytestmark = pytest.mark.slow
EXAMPLES = 8


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.allows_5xx("a 503 (no host to reach) is not bad input; the test counts the rest")
async def test_no_generated_request_gets_a_5xx(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    loop = asyncio.get_running_loop()
    schema = schemathesis.openapi.from_dict((await client.get("/openapi.json")).json())
    operations = [op.ok() for op in schema.get_all_operations() if op.ok() is not None]
    assert len(operations) > 50, "the OpenAPI lost the APIs' routes"
    served: list[str] = []

    def send(case: Any, token: str) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        headers = {str(k): str(v) for k, v in (kwargs.get("headers") or {}).items()}
        headers["X-Auth-Token"] = token
        request = client.request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            headers=headers,
            json=kwargs.get("json"),
        )
        r = asyncio.run_coroutine_threadsafe(request, loop).result()
        if r.status_code >= 500 and r.status_code != 503:
            served.append(f"{kwargs['method']} {kwargs['url']}: {r.status_code} {r.text[:300]}")

    def fuzz(operation: Any) -> None:
        # Hypothesis drives a sync function: it runs in a thread and sends through
        # the test's event loop.
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=operation.as_strategy(), as_admin=st.booleans())
        def call(case: Any, as_admin: bool) -> None:
            send(case, admin_token if as_admin else "not-a-token")

        call()

    for operation in operations:
        await asyncio.to_thread(fuzz, operation)
    assert not served, "\n".join(served[:20])
