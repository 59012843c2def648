"""The broker URL of the notification relay: aio-pika's amqp:// or oslo.messaging's rabbit://."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from berth.config import Settings
from berth.events.amqp import AmqpRelay


def test_magnums_transport_url_names_the_same_broker(tmp_path: Path) -> None:
    url = "rabbit://openstack:secret@10.0.0.5:5672/magnum"
    settings = Settings(data_dir=tmp_path, notification_url=url)
    assert settings.notification_url == url
    relay = AmqpRelay(url, "magnum")
    assert relay.url == "amqp://openstack:secret@10.0.0.5:5672/magnum"
    assert (relay.topic, relay.durable, relay.queue_arguments) == ("notifications", False, {})
    assert AmqpRelay("amqp://h/", quorum=True).queue_arguments == {"x-queue-type": "quorum"}
    assert AmqpRelay("amqp://h/", quorum=True).durable  # quorum queues are durable
    assert Settings(data_dir=tmp_path, notification_url="").notification_url is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("kafka://broker:9092/", "amqp://, amqps:// or rabbit://"),
        ("amqp://", "amqp://, amqps:// or rabbit://"),
        ("rabbit://u:p@h1:5672,u:p@h2:5672/", "one broker"),
    ],
)
def test_a_url_the_relay_cannot_use_stops_the_start(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(data_dir=tmp_path, notification_url=url)
