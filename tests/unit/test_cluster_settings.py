"""Typed cluster, node group and template settings: old rows load, round trips are lossless."""

from __future__ import annotations

from typing import Any

import pytest

from berth.domain.cluster_settings import (
    DEFAULT_CREATE_TIMEOUT,
    ClusterSettings,
    Job,
    NodeGroupSettings,
    TemplateSettings,
)
from berth.domain.cluster_templates import FIELDS

# A cluster as Berth writes it at create, then after a build and a health poll.
CREATED: dict[str, Any] = {
    "keypair": None,
    "node_count": 2,
    "master_count": 1,
    "docker_volume_size": None,
    "labels": {"a": "1"},
    "master_flavor_id": "m1.small",
    "flavor_id": "m1.small",
    "create_timeout": 30,
    "discovery_url": None,
    "fixed_network": None,
    "fixed_subnet": None,
    "floating_ip_enabled": True,
    "master_lb_enabled": False,
    "template_labels": {"a": "0"},
}
BUILT: dict[str, Any] = {
    **CREATED,
    "api_address": "tcp://10.0.0.2:2376",
    "master_addresses": ["10.0.0.2"],
    "node_addresses": ["10.0.0.3", "10.0.0.4"],
    "coe_version": "24.0",
    "container_version": "24.0",
    "health_status": "HEALTHY",
    "health_status_reason": {"api": "ok"},
    "upgrade": {"cluster_template_id": "t", "max_batch_size": 2, "nodegroups": ["x"]},
    "job": {"status": "UPDATE_IN_PROGRESS", "attempts": 2},
}


@pytest.mark.parametrize(
    "stored",
    [
        {},  # a row with nothing in it
        CREATED,
        BUILT,
        {"node_count": 3, "master_count": 1, "flavor_id": "m1.large"},  # before node groups
        {**BUILT, "from_a_newer_berth": {"x": [1]}},  # unknown keys are kept
        {"node_count": "3", "labels": None, "job": {"status": 1}},  # mistyped values are kept
        {"job": {"status": "CREATE_IN_PROGRESS", "attempts": 1, "note": "x"}},
    ],
)
def test_a_stored_cluster_round_trips_unchanged(stored: dict[str, Any]) -> None:
    assert ClusterSettings.from_json(stored).to_json() == stored


def test_missing_counts_and_timeout_get_the_defaults_from_one_place() -> None:
    settings = ClusterSettings.from_json({})
    assert (settings.masters, settings.nodes, settings.timeout) == (1, 1, DEFAULT_CREATE_TIMEOUT)
    assert DEFAULT_CREATE_TIMEOUT == 60  # Magnum's default, shown by the API unchanged
    assert ClusterSettings.from_json({"create_timeout": 0}).timeout == 0  # no deadline


def test_typed_fields_read_what_berth_wrote() -> None:
    settings = ClusterSettings.from_json(BUILT)
    assert settings.node_count == 2 and settings.labels == {"a": "1"}
    assert settings.job == Job("UPDATE_IN_PROGRESS", 2)
    assert settings.upgrade is not None and settings.upgrade["max_batch_size"] == 2
    assert settings.stored("api_address") == "tcp://10.0.0.2:2376"
    assert settings.stored("discovery_url") is None and "discovery_url" in settings.to_json()


def test_a_mistyped_value_reads_as_the_default_but_is_written_back() -> None:
    settings = ClusterSettings.from_json({"node_count": "3", "labels": None})
    assert settings.node_count is None and settings.nodes == 1 and settings.labels == {}
    assert settings.stored("labels") is None  # the API shows what is stored, as before
    assert settings.with_(node_count=4).to_json() == {"node_count": 4, "labels": None}


def test_setting_and_clearing_fields_keeps_the_rest() -> None:
    stored = {**BUILT, "from_a_newer_berth": 1}
    ended = ClusterSettings.from_json(stored).without("job", "upgrade")
    assert ended.job is None and ended.upgrade is None
    assert ended.to_json() == {
        k: v for k, v in stored.items() if k not in ("job", "upgrade")
    }
    again = ended.with_(job=Job("DELETE_IN_PROGRESS", 1)).to_json()
    assert again["job"] == {"status": "DELETE_IN_PROGRESS", "attempts": 1}
    assert again["from_a_newer_berth"] == 1


@pytest.mark.parametrize(
    "stored",
    [
        {},  # default groups are created with no settings
        {"merge_labels": False, "node_labels": {"k": "v"}, "node_taints": []},
        {"merge_labels": True, "node_taints": [{"key": "k", "effect": "NoSchedule"}]},
        {"node_labels": None, "merge_labels": "yes", "later": 1},
    ],
)
def test_a_stored_node_group_round_trips_unchanged(stored: dict[str, Any]) -> None:
    settings = NodeGroupSettings.from_json(stored)
    assert settings.to_json() == stored
    assert isinstance(settings.merge_labels, bool) and isinstance(settings.node_labels, dict)


@pytest.mark.parametrize(
    "stored",
    [
        {"coe": "swarm-mode", "image_id": "berth/node:1", "network_driver": "docker"},
        {"coe": "swarm-mode", "image_id": "i", "labels": {"a": "1"}, "tls_disabled": True},
        {"coe": "swarm-mode", "image_id": "i", "future_field": [1], "server_type": None},
    ],
)
def test_a_stored_template_round_trips_unchanged(stored: dict[str, Any]) -> None:
    assert TemplateSettings.from_json(stored).to_json() == stored


def test_template_defaults_come_from_the_field_table() -> None:
    settings = TemplateSettings.from_json({"coe": "swarm-mode", "server_type": None})
    for name in ("registry_enabled", "tls_disabled", "master_lb_enabled", "floating_ip_enabled"):
        assert getattr(settings, name) is FIELDS[name].default
    assert settings.server_type == FIELDS["server_type"].default == "vm"  # None is no value
    assert settings.labels == {} and settings.docker_volume_size is None
    removed = settings.with_(tls_disabled=True).without("tls_disabled")
    assert removed.tls_disabled is False and "tls_disabled" not in removed.to_json()


@pytest.mark.parametrize(
    ("job", "attempts"),
    [
        (None, 0),
        ({"status": "CREATE_IN_PROGRESS", "attempts": 2}, 2),
        ({"status": "DELETE_IN_PROGRESS", "attempts": 2}, 0),  # another operation: a new count
        ({"status": "CREATE_IN_PROGRESS", "attempts": "2"}, 0),  # junk counts as no start
        ({"status": "CREATE_IN_PROGRESS", "attempts": 3, "by": "hand"}, 3),
    ],
)
def test_the_starts_of_an_operation_are_counted_per_status(
    job: dict[str, Any] | None, attempts: int
) -> None:
    settings = ClusterSettings.from_json({} if job is None else {"job": job})
    assert settings.attempts("CREATE_IN_PROGRESS") == attempts
