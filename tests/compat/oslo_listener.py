"""A notification consumer as Ceilometer is one: the real oslo.messaging listener.

Run as ``python oslo_listener.py TRANSPORT_URL EXCHANGE TOPIC`` by
tests/compat/test_oslo_notifications.py, in its own process (oslo.messaging brings
eventlet and oslo.config's global state, which the test process does without). It
listens on the exchange for ``TOPIC.info`` and ``TOPIC.error`` with an endpoint whose
``info``/``error`` methods print each notification as one JSON line on stdout, says
``{"ready": true}`` once its queues are declared and bound, and stops cleanly when
its standard input is closed.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import oslo_messaging
from oslo_config import cfg

__all__ = ["Endpoint", "main"]

_lock = threading.Lock()


def _say(line: dict[str, Any]) -> None:
    with _lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


class Endpoint:
    """oslo.messaging's notification endpoint: one method per priority it handles."""

    def _seen(self, priority: str, ctxt: Any, publisher_id: str, event_type: str,
              payload: Any, metadata: Any) -> None:  # fmt: skip
        _say({
            "priority": priority,
            "ctxt": dict(ctxt or {}),
            "publisher_id": publisher_id,
            "event_type": event_type,
            "payload": payload,
            "metadata": dict(metadata or {}),
        })  # fmt: skip

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
             metadata: Any) -> None:  # fmt: skip
        self._seen("info", ctxt, publisher_id, event_type, payload, metadata)

    def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
              metadata: Any) -> None:  # fmt: skip
        self._seen("error", ctxt, publisher_id, event_type, payload, metadata)


def main(url: str, exchange: str, topic: str) -> None:
    conf = cfg.ConfigOpts()
    conf([], project="berth-oslo-listener")
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    target = oslo_messaging.Target(topic=topic, exchange=exchange)
    listener = oslo_messaging.get_notification_listener(
        transport, [target], [Endpoint()], executor="threading"
    )
    listener.start()
    _say({"ready": True})
    sys.stdin.read()  # until the test closes it
    listener.stop()
    listener.wait()
    transport.cleanup()
    _say({"stopped": True})


if __name__ == "__main__":
    main(*sys.argv[1:4])
