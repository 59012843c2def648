"""The Glance client's bounds and answers, against the in-memory Glance (tests/fakes/glance.py)."""

from __future__ import annotations

import httpx
import pytest

from berth import errors
from berth.images.glance import GlanceClient, GlanceImageNotFound, GlanceUnavailable
from tests.fakes.glance import GL, FakeGlance


def _client(glance: FakeGlance) -> GlanceClient:
    return GlanceClient(GL, 5, 5, transport=httpx.MockTransport(glance.handler))


async def test_a_download_past_the_limit_stops_with_a_clear_error() -> None:
    glance = FakeGlance({"t": "p1"})
    image_id = glance.add("big", "p1", b"x" * 300_000)
    client = _client(glance)
    got = b""
    with pytest.raises(errors.Invalid, match="glance_image_max_bytes"):
        async for chunk in client.download("t", image_id, limit=100_000):
            got += chunk
    assert len(got) <= 100_000
    await client.aclose()


async def test_a_download_within_the_limit_is_the_data() -> None:
    glance = FakeGlance({"t": "p1"})
    image_id = glance.add("small", "p1", b"abc" * 1000)
    client = _client(glance)
    data = b"".join([c async for c in client.download("t", image_id, limit=10_000)])
    assert data == b"abc" * 1000
    await client.aclose()


async def test_not_visible_is_zuns_not_found_and_down_is_unavailable() -> None:
    glance = FakeGlance({"t": "p1", "u": "p2"})
    image_id = glance.add("mine", "p1", b"a")
    client = _client(glance)
    with pytest.raises(GlanceImageNotFound, match=f"^Image {image_id} could not be found.$"):
        await client.find("u", image_id)
    assert errors.error_code(GlanceImageNotFound("x")) == "image-not-found"
    glance.down = True
    with pytest.raises(GlanceUnavailable):
        await client.find("t", "mine")
    await client.aclose()


async def test_a_tag_picks_among_images_of_one_name() -> None:
    glance = FakeGlance({"t": "p1"})
    first = glance.add("app", "p1", b"1")
    second = glance.add("app", "p1", b"2")
    glance.images[first].body["tags"] = ["v1"]
    glance.images[second].body["tags"] = ["v2"]
    client = _client(glance)
    assert (await client.find("t", "app", "v2")).id == second
    with pytest.raises(errors.Conflict):
        await client.find("t", "app")
    await client.aclose()
