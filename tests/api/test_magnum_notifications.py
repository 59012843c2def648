"""CADF cluster notifications: in the events table, and relayed to the real RabbitMQ broker."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import aio_pika
import aio_pika.exceptions
import httpx
import pytest
from fastapi import FastAPI

from berth.events.amqp import AmqpRelay
from tests.api.test_magnum_clusters import MAG, V, World

AMQP_URL = os.environ.get("BERTH_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


async def _broker_or_skip() -> aio_pika.abc.AbstractRobustConnection:
    try:
        return await aio_pika.connect_robust(AMQP_URL, timeout=3)
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"RabbitMQ not reachable: {exc}")


async def test_notifications_reach_rabbitmq(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    conn = await _broker_or_skip()
    tag = uuid.uuid4().hex[:8]
    # A topic of its own: the relay declares the queues <topic>.info/.error (as
    # oslo.messaging's notifier does), and queue names are shared by all the broker's users.
    exchange_name, topic = f"magnum-test-{tag}", f"notifications-test-{tag}"
    relay = AmqpRelay(AMQP_URL, exchange_name, topic=topic)
    try:
        channel = await conn.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=False
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, f"{topic}.*")
        world = World(app, client)
        await world.template(admin_token)
        cluster = await world.cluster(admin_token)
        await world.work()
        env = app.state.berth.env
        assert await relay.tick(env.db) == 2  # create pending + create success
        assert await relay.tick(env.db) == 0  # the cursor moved on
        got = []
        for _ in range(2):
            msg = await queue.get(timeout=5)
            await msg.ack()
            got.append((msg.routing_key, json.loads(json.loads(msg.body)["oslo.message"])))
        assert [k for k, _ in got] == [f"{topic}.info", f"{topic}.info"]
        bodies = [m for _, m in got]
        assert {m["event_type"] for m in bodies} == {"magnum.cluster.create"}
        outcomes = [m["payload"]["outcome"] for m in bodies]
        assert outcomes == ["pending", "success"]
        target = bodies[1]["payload"]["target"]
        assert target["id"] == cluster and target["typeURI"] == "service/magnum/cluster"
        # A failure is published with ERROR priority.
        world.driver.fail = "broken"
        await client.post(
            f"{V}/clusters",
            json={"cluster_template_id": "tpl", "name": "bad"},
            headers={"X-Auth-Token": admin_token, **MAG},
        )
        await world.work()
        assert await relay.tick(env.db) == 2
        keys = []
        for _ in range(2):
            msg = await queue.get(timeout=5)
            await msg.ack()
            keys.append(msg.routing_key)
        assert keys == [f"{topic}.info", f"{topic}.error"]
        # The default queues hold the same notifications for a consumer that starts later.
        for priority, count in (("info", 3), ("error", 1)):
            waiting = await channel.declare_queue(f"{topic}.{priority}", passive=True)
            assert waiting.declaration_result.message_count == count
    finally:
        await relay.close()
        cleanup = await conn.channel()
        for priority in ("info", "error"):
            await cleanup.queue_delete(f"{topic}.{priority}")
        await cleanup.exchange_delete(exchange_name)
        await asyncio.wait_for(conn.close(), 5)


async def test_a_queue_its_consumers_declared_otherwise_still_gets_them(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Consumers configured for quorum queues (kolla's default) declared ``<topic>.info``
    first: the relay's own declaration is refused, and it publishes to that queue all the same."""
    conn = await _broker_or_skip()
    tag = uuid.uuid4().hex[:8]
    exchange_name, topic = f"magnum-test-{tag}", f"notifications-test-{tag}"
    relay = AmqpRelay(AMQP_URL, exchange_name, topic=topic)
    try:
        channel = await conn.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=False
        )
        queue = await channel.declare_queue(
            f"{topic}.info", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, f"{topic}.info")
        world = World(app, client)
        await world.template(admin_token)
        cluster = await world.cluster(admin_token)
        await world.work()
        assert await relay.tick(app.state.berth.env.db) == 2
        bodies = []
        for _ in range(2):
            msg = await queue.get(timeout=5)
            await msg.ack()
            bodies.append(json.loads(json.loads(msg.body)["oslo.message"]))
        assert [m["payload"]["outcome"] for m in bodies] == ["pending", "success"]
        assert bodies[0]["payload"]["target"]["id"] == cluster
        assert f"queue '{topic}.info' exists with other settings" in caplog.text
    finally:
        await relay.close()
        cleanup = await conn.channel()
        await cleanup.queue_delete(f"{topic}.info")
        await cleanup.exchange_delete(exchange_name)
        await asyncio.wait_for(conn.close(), 5)


async def test_an_exchange_declared_otherwise_holds_the_notifications_back(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    """Consumers with ``amqp_durable_queues`` made the exchange durable: the broker refuses the
    relay's declaration, nothing is lost, and ``durable=True`` relays the waiting events."""
    conn = await _broker_or_skip()
    tag = uuid.uuid4().hex[:8]
    exchange_name, topic = f"magnum-test-{tag}", f"notifications-test-{tag}"
    wrong = AmqpRelay(AMQP_URL, exchange_name, topic=topic)
    right = AmqpRelay(AMQP_URL, exchange_name, topic=topic, durable=True)
    try:
        channel = await conn.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, f"{topic}.*")
        world = World(app, client)
        await world.template(admin_token)
        await world.cluster(admin_token)
        await world.work()
        db = app.state.berth.env.db
        for _ in range(2):  # every tick is refused, over the same connection
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await wrong.tick(db)
        assert await right.tick(db) == 2  # the cursor had not moved
        for _ in range(2):
            msg = await queue.get(timeout=5)
            await msg.ack()
            assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    finally:
        await wrong.close()
        await right.close()
        cleanup = await conn.channel()
        for priority in ("info", "error"):
            await cleanup.queue_delete(f"{topic}.{priority}")
        await cleanup.exchange_delete(exchange_name)
        await asyncio.wait_for(conn.close(), 5)
