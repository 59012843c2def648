"""Relays Magnum's cluster notifications from the events outbox to RabbitMQ.

Why aio-pika: Berth is asyncio end to end and aio-pika is the asyncio AMQP 0-9-1
client (robust reconnects, publisher confirms); pika would need its blocking
connection pushed into a thread. Messages use oslo.messaging's v2 envelope on a
topic exchange (``magnum`` by default) with the routing key
``notifications.<priority>``, so an oslo.messaging consumer (ceilometer, a
billing hook) reads them as it reads Magnum's.

Delivery is at least once: the cursor (``outbox_cursors``) advances only after
the broker confirmed the batch; it is locked for the batch, so two workers never
relay the same events.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import aio_pika

from berth.store.db import Database
from berth.store.events import locked_cursor, since
from berth.store.tables import EventRow

__all__ = ["AmqpRelay", "envelope"]

_CURSOR = "amqp-notifications"
_BATCH = 100


def envelope(row: EventRow) -> dict[str, Any]:
    """The oslo.messaging v2 envelope of one notification event."""
    payload = row.payload or {}
    message = {
        "message_id": str(uuid.uuid4()),
        "publisher_id": payload.get("publisher_id", "container-infra.berth"),
        "event_type": row.event_type,
        "priority": payload.get("priority", "INFO"),
        "payload": payload.get("payload", {}),
        "timestamp": row.created_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    return {"oslo.version": "2.0", "oslo.message": json.dumps(message)}


class AmqpRelay:
    """A worker job: publish new ``magnum.*`` events, then advance the cursor."""

    def __init__(self, url: str, exchange: str = "magnum") -> None:
        self.url, self.exchange_name = url, exchange
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def _exchange_ready(self) -> aio_pika.abc.AbstractExchange:
        if self._exchange is None:
            self._connection = await aio_pika.connect_robust(self.url)
            channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=False
            )
        return self._exchange

    async def tick(self, db: Database) -> int:
        """Relay one batch; returns how many notifications were published."""
        async with db.transaction() as session:
            cursor = await locked_cursor(session, _CURSOR)
            rows = await since(session, cursor.last_event_id, limit=_BATCH)
            if not rows:
                return 0
            exchange = await self._exchange_ready()
            sent = 0
            for row in rows:
                if row.event_type.startswith("magnum."):
                    priority = str((row.payload or {}).get("priority", "INFO")).lower()
                    body = json.dumps(envelope(row)).encode()
                    await exchange.publish(
                        aio_pika.Message(body, content_type="application/json"),
                        routing_key=f"notifications.{priority}",
                    )
                    sent += 1
            cursor.last_event_id = rows[-1].id
        return sent

    async def close(self) -> None:
        """Close the broker connection."""
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._exchange = None
