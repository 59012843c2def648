"""CADF cluster notifications: in the events table, and relayed to the real RabbitMQ broker."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import aio_pika
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
    exchange_name = f"magnum-test-{uuid.uuid4().hex[:8]}"
    relay = AmqpRelay(AMQP_URL, exchange_name)
    try:
        channel = await conn.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=False
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "notifications.*")
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
        assert [k for k, _ in got] == ["notifications.info", "notifications.info"]
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
        assert keys == ["notifications.info", "notifications.error"]
    finally:
        await relay.close()
        await asyncio.wait_for(conn.close(), 5)
