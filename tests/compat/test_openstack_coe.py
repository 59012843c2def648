"""The unmodified ``openstack coe`` CLI (python-magnumclient) against a live berth-api."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat.oscli import Cli, live_cli
from tests.helpers import open_clusters_file

pytestmark = pytest.mark.compat

PW = "member-pw-123"


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    work = tmp_path_factory.mktemp("compat-coe")
    # Members run clusters here, as an operator's policy file allows (admin-only by default).
    with live_cli(work, BERTH_POLICY_FILE=str(open_clusters_file(work))) as c:
        # The stock CLI's own project create / user create / role add, for one member;
        # the other is made the same way through the identity API (Cli.add_member):
        # three more CLI runs would only repeat them.
        c.run("project", "create", "coe-a")
        c.run("user", "create", "--project", "coe-a", "--password", PW, "coe-alice")
        c.run("role", "add", "--user", "coe-alice", "--project", "coe-a", "member")
        c.add_member("coe-b", "coe-bob", PW)
        yield c


def _json_after_banner(cli: Cli, *args: str, **kw: Any) -> Any:
    """The JSON that follows the "Request to create ... accepted" line some commands print."""
    out = cli.run(*args, "-f", "json", **kw).stdout
    return json.loads(out[out.index("{") :])


def test_catalog_has_container_infra(cli: Cli) -> None:
    services = {s["Type"] for s in cli.json("catalog", "list")}
    assert "container-infra" in services


def test_cluster_template_create_list_show_update_delete(cli: Cli) -> None:
    alice = {"user": "coe-alice", "password": PW, "project": "coe-a"}
    bob = {"user": "coe-bob", "password": PW, "project": "coe-b"}
    ct = _json_after_banner(
        cli, "coe", "cluster", "template", "create", "swarm-tpl",
        "--coe", "swarm-mode", "--image", "berth-node",
        "--external-network", "public", "--keypair", "mykey",
        "--labels", "a=1,b=2", "--tags", "t1",
        **alice,
    )  # fmt: skip
    assert ct["name"] == "swarm-tpl" and ct["coe"] == "swarm-mode"
    assert ct["labels"] == {"a": "1", "b": "2"}
    assert ct["external_network_id"] == "public" and ct["keypair_id"] == "mykey"
    rows = cli.json("coe", "cluster", "template", "list", **alice)
    assert [r["name"] for r in rows] == ["swarm-tpl"]
    shown = cli.json("coe", "cluster", "template", "show", "swarm-tpl", **alice)
    assert shown["uuid"] == ct["uuid"]
    updated = cli.json(
        "coe", "cluster", "template", "update", "swarm-tpl",
        "--label", "c=3", "--no-label", "a", "--docker-volume-size", "4",
        **alice,
    )  # fmt: skip
    assert updated["labels"] == {"b": "2", "c": "3"} and updated["docker_volume_size"] == 4
    # Another project sees nothing and cannot delete it.
    assert cli.json("coe", "cluster", "template", "list", **bob) == []
    proc = cli.run("coe", "cluster", "template", "show", ct["uuid"], check=False, **bob)
    assert proc.returncode != 0 and "could not be found" in proc.stderr
    # (the stock command reports a failed delete on stdout and still exits 0)
    proc = cli.run("coe", "cluster", "template", "delete", "swarm-tpl", check=False, **bob)
    assert "could not be found" in proc.stdout + proc.stderr
    # still there for alice (read direct: the CLI's show is checked above)
    kept = cli.rest("GET", f"/container-infra/v1/clustertemplates/{ct['uuid']}",
                    version="container-infra 1.14", **alice)  # fmt: skip
    assert kept.status_code == 200 and kept.json()["name"] == "swarm-tpl", kept.text
    cli.run("coe", "cluster", "template", "delete", "swarm-tpl", **alice)
    assert cli.json("coe", "cluster", "template", "list", **alice) == []


def test_stats(cli: Cli) -> None:
    proc = cli.run("coe", "stats", "list", "admin")
    assert "clusters" in proc.stdout


def test_cluster_commands_without_an_installed_driver(cli: Cli) -> None:
    """No driver provides kubernetes (only swarm-mode ships): create is refused the Magnum way."""
    alice = {"user": "coe-alice", "password": PW, "project": "coe-a"}
    _json_after_banner(
        cli, "coe", "cluster", "template", "create", "tpl2",
        "--coe", "kubernetes", "--image", "berth-node", "--external-network", "public",
        **alice,
    )  # fmt: skip
    assert cli.json("coe", "cluster", "list", **alice) == []
    proc = cli.run(
        "coe", "cluster", "create", "--cluster-template", "tpl2", "--node-count", "1", "c1",
        check=False, **alice,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "not supported" in proc.stderr and "HTTP 400" in proc.stderr
    proc = cli.run("coe", "cluster", "show", "c1", check=False, **alice)
    assert proc.returncode != 0 and "could not be found" in proc.stderr
    cli.run("coe", "cluster", "template", "delete", "tpl2", **alice)
