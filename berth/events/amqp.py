"""Relays Magnum's cluster notifications from the events outbox to RabbitMQ.

Why aio-pika: Berth is asyncio end to end and aio-pika is the asyncio AMQP 0-9-1
client (robust reconnects, publisher confirms); pika would need its blocking
connection pushed into a thread.

What goes on the wire is what oslo.messaging's RabbitMQ notifier sends, so an
oslo.messaging notification listener (Ceilometer, a billing hook) reads Berth's
notifications as it reads Magnum's: the v2 envelope (``oslo.version`` and the
``oslo.message`` JSON string) on a topic exchange (``magnum`` by default) with the
routing key ``<topic>.<priority>`` (``notifications.info``). Like that notifier,
the relay also declares the default queue named after the routing key, bound to
it, before its first publish on a connection: notifications sent while no
consumer runs wait there for the listener that starts later instead of being
dropped. ``durable`` and ``quorum`` mirror oslo.messaging's
``amqp_durable_queues`` and ``rabbit_quorum_queue``: set them as the consumers
are configured, or the broker refuses the second, different declaration.

Delivery is at least once: the cursor (``outbox_cursors``) advances only after
the broker confirmed the batch; it is locked for the batch, so two workers never
relay the same events.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any

import aio_pika
import aio_pika.exceptions

from berth.store.db import Database
from berth.store.events import locked_cursor, since
from berth.store.tables import EventRow

__all__ = ["RELAY_CURSOR", "AmqpRelay", "envelope"]

log = logging.getLogger(__name__)

RELAY_CURSOR = "amqp-notifications"  # the outbox cursor of the relay
_BATCH = 100


def envelope(row: EventRow) -> dict[str, Any]:
    """The oslo.messaging v2 envelope of one notification event.

    Magnum's notifier packs its request context into the message as ``_context_*``
    keys, which a listener gets as its ``ctxt`` (Ceilometer's event traits read
    ``ctxt.project_id``); Berth sends the user and project of the CADF initiator
    that way, never a token.
    """
    payload = row.payload or {}
    cadf = payload.get("payload", {})
    initiator = cadf.get("initiator", {}) if isinstance(cadf, dict) else {}
    message: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "publisher_id": payload.get("publisher_id", "container-infra.berth"),
        "event_type": row.event_type,
        "priority": payload.get("priority", "INFO"),
        "payload": cadf,
        "timestamp": row.created_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "_context_user_id": initiator.get("user_id"),
        "_context_project_id": initiator.get("project_id") or row.project_id,
    }
    return {"oslo.version": "2.0", "oslo.message": json.dumps(message)}


class AmqpRelay:
    """A worker job: publish new ``magnum.*`` events, then advance the cursor."""

    def __init__(
        self,
        url: str,
        exchange: str = "magnum",
        *,
        topic: str = "notifications",
        durable: bool = False,
        quorum: bool = False,
    ) -> None:
        # oslo.messaging's transport URL of the same broker (the one Magnum's config has).
        if url.startswith("rabbit://"):
            url = "amqp://" + url.removeprefix("rabbit://")
        self.url, self.exchange_name, self.topic = url, exchange, topic
        # oslo.messaging: quorum queues are durable, and so is then the exchange.
        self.durable = durable or quorum
        self.queue_arguments: dict[str, Any] = {"x-queue-type": "quorum"} if quorum else {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._queues: set[str] = set()  # default queues declared on this connection
        self._mode = (
            aio_pika.DeliveryMode.PERSISTENT
            if self.durable
            else aio_pika.DeliveryMode.NOT_PERSISTENT
        )

    async def _exchange_ready(self) -> aio_pika.abc.AbstractExchange:
        if self._exchange is not None:
            return self._exchange
        if self._connection is None:
            self._connection = await aio_pika.connect_robust(self.url)
            # As oslo.messaging, declare the default queues again after a reconnection
            # (a broker restart forgets the queues that are not durable).
            self._connection.reconnect_callbacks.add(lambda *_: self._queues.clear())
        channel = await self._connection.channel(publisher_confirms=True)
        try:
            self._exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=self.durable
            )
        except aio_pika.exceptions.ChannelPreconditionFailed:
            # Declared otherwise by its consumers (notification_durable differs): the
            # batch is not relayed (the cursor stays), the next tick tries again.
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        return self._exchange

    async def _default_queue(self, routing_key: str) -> None:
        """Declare the queue ``routing_key`` bound to it, once per connection.

        On a channel of its own: a queue that its consumers declared with other
        arguments makes the broker close the channel (PRECONDITION_FAILED); that queue
        exists and is bound, so the relay says so and publishes all the same.
        """
        if routing_key in self._queues or self._connection is None:
            return
        channel = await self._connection.channel()
        try:
            queue = await channel.declare_queue(
                routing_key, durable=self.durable, arguments=self.queue_arguments
            )
            await queue.bind(self.exchange_name, routing_key)
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            log.warning(
                "queue %r exists with other settings than notification_durable/"
                "notification_quorum say (%s); publishing to it as it is",
                routing_key,
                exc,
            )
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        self._queues.add(routing_key)

    async def tick(self, db: Database) -> int:
        """Relay one batch; returns how many notifications were published."""
        async with db.transaction() as session:
            cursor = await locked_cursor(session, RELAY_CURSOR)
            rows = await since(session, cursor.last_event_id, limit=_BATCH)
            if not rows:
                return 0
            exchange = await self._exchange_ready()
            sent = 0
            for row in rows:
                if row.event_type.startswith("magnum."):
                    priority = str((row.payload or {}).get("priority", "INFO")).lower()
                    routing_key = f"{self.topic}.{priority}"
                    await self._default_queue(routing_key)
                    body = json.dumps(envelope(row)).encode()
                    await exchange.publish(
                        aio_pika.Message(
                            body, content_type="application/json", delivery_mode=self._mode
                        ),
                        routing_key=routing_key,
                    )
                    sent += 1
            cursor.last_event_id = rows[-1].id
        return sent

    async def close(self) -> None:
        """Close the broker connection."""
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._exchange = None
        self._queues.clear()
