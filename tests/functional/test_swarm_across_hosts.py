"""Acceptance: a swarm-mode cluster whose nodes run on two hosts apart (issue #15).

Two test hosts of the overlay cloud (``tests/functional/overlay_cloud.py``: a network
namespace each, its own dockerd and berth-agent, ``network_driver = overlay``), in
zones ``zone-1`` and ``zone-2``. The cluster's master is placed on the first by the
cluster label ``availability_zone`` (Magnum's), a node group's worker on the second
by the group's. berth-api (and its cluster worker) runs on this machine, a third
address on the underlay: it reaches each node where the node's host publishes 2376,
never by the node's private address. A user then drives the swarm with the docker
CLI and the cluster's TLS files, as ``openstack coe cluster config`` would write
them, and a service's two tasks, one per host, move 64 KiB between them over a
swarm overlay network: swarm's VXLAN inside the nodes, in Berth's VXLAN between
the hosts.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.functional.docker_engine import TEST_IMAGE, engine_or_skip
from tests.functional.hosts import Cloud, HostSpec, wait_until
from tests.functional.overlay_cloud import overlay_cloud

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NODE_IMAGE = "berth/swarm-node:1"
ENTRYPOINT = "usr/local/bin/berth-node-entrypoint"
SPECS = [HostSpec("swx-1", zone="zone-1"), HostSpec("swx-2", zone="zone-2")]
MAG = {"OpenStack-API-Version": "container-infra latest"}
OVERLAY_MTU = 1450  # the overlay driver's default (overlay_mtu): each node's eth0
SIZE = 64 * 1024
# Each task serves SIZE random bytes and their checksum over HTTP.
SERVE = (
    f"mkdir -p /www && head -c {SIZE} /dev/urandom > /www/blob"
    " && md5sum < /www/blob > /www/sum && exec httpd -f -p 8080 -h /www"
)


@dataclass
class Far:
    """The cluster seen from outside: the cloud, its rows, the user's TLS files."""

    cloud: Cloud
    cluster: dict[str, Any]
    nodes: dict[str, dict[str, Any]]  # node containers by host
    certs: Path

    def endpoint(self, host: str) -> str:
        """``tcp://<host address>:<published port>`` of the node on ``host``."""
        net = self.cloud.engines[host].host
        assert net is not None
        return f"tcp://{net.address}:{self.nodes[host]['ports'][0]}"

    def docker(self, host: str, *args: str, stdin: bytes | None = None) -> str:
        """The docker CLI as the cluster's user, against ``host`` (a ``tcp://`` address)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(
            DOCKER_HOST=host,
            DOCKER_CERT_PATH=str(self.certs),
            DOCKER_TLS_VERIFY="1",
            HOME=str(self.certs),
        )
        done = subprocess.run(
            ["docker", *args], env=env, input=stdin, capture_output=True, timeout=180, check=False
        )
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"docker {' '.join(args)} at {host}:\n{err}"
        return out.strip()


def _magnum(c: Cloud, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {**MAG, "X-Auth-Token": c.token}
    url = f"{c.api.base_url}/container-infra/v1{path}"
    r = httpx.request(method, url, headers=headers, timeout=30, **kw)
    assert r.status_code < 500, f"{method} {path} answered {r.status_code}: {r.text}"
    return r


def _wait(c: Cloud, uuid: str, want: str, timeout: float = 480) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        shown: dict[str, Any] = _magnum(c, "GET", f"/clusters/{uuid}").json()
        if shown["status"].endswith("_FAILED"):
            raise AssertionError(f"{shown['status']}: {shown['status_reason']}\n{c.log_tails()}")
        return shown if shown["status"] == want else None

    return wait_until(reached, timeout, f"the cluster to be {want}", poll=2)


def _as_in_repo(engine: Any) -> None:
    """The node image on a test host, with the repository's entrypoint.

    CI builds ``berth/swarm-node`` from images/swarm-node (scripts/lib.sh, cached by
    a hash of the directory); on a machine whose image is older, the test host's
    copy gets the repository's entrypoint (committed in that host's engine only).
    """
    wanted = (REPO / "images/swarm-node/entrypoint.sh").read_bytes()
    box = engine.create_container(NODE_IMAGE, entrypoint=["/bin/true"])
    try:
        stream, _ = engine.get_archive(box["Id"], f"/{ENTRYPOINT}")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            assert member is not None
            shipped = tar.extractfile(member)
            if shipped is not None and shipped.read() == wanted:
                return
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(ENTRYPOINT.rsplit("/", 1)[1])
            info.size, info.mode = len(wanted), 0o755
            tar.addfile(info, io.BytesIO(wanted))
        engine.put_archive(box["Id"], f"/{ENTRYPOINT.rsplit('/', 1)[0]}", archive.getvalue())
        repo, tag = NODE_IMAGE.split(":")
        # The node image's own entrypoint again (the helper container ran /bin/true).
        changes = ['ENTRYPOINT ["/usr/local/bin/berth-node-entrypoint"]']
        engine.commit(box["Id"], repository=repo, tag=tag, changes=changes)
    finally:
        engine.remove_container(box["Id"], force=True)


def _user_certs(c: Cloud, uuid: str, into: Path) -> Path:
    """ca.pem, cert.pem and key.pem of a user of the cluster (what ``cluster config`` writes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    r = _magnum(c, "POST", "/certificates", json={"cluster_uuid": uuid, "csr": pem})
    assert r.status_code == 201, r.text
    into.mkdir()
    (into / "cert.pem").write_text(r.json()["pem"])
    (into / "ca.pem").write_text(_magnum(c, "GET", f"/certificates/{uuid}").json()["pem"])
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (into / "key.pem").write_bytes(key_pem)
    return into


def _create(c: Cloud) -> str:
    """A master in zone-1 (cluster create), then a worker in zone-2 (a node group)."""
    tpl = {
        "name": "swx", "coe": "swarm-mode", "image_id": NODE_IMAGE,
        "external_network_id": "public", "flavor_id": "m1.small", "master_flavor_id": "m1.small",
    }  # fmt: skip
    r = _magnum(c, "POST", "/clustertemplates", json=tpl)
    assert r.status_code == 201, r.text
    body = {
        "name": "far", "cluster_template_id": r.json()["uuid"], "master_count": 1,
        "node_count": 0, "labels": {"availability_zone": "zone-1"}, "create_timeout": 15,
    }  # fmt: skip
    r = _magnum(c, "POST", "/clusters", json=body)
    assert r.status_code == 202, r.text
    uuid = str(r.json()["uuid"])
    _wait(c, uuid, "CREATE_COMPLETE")
    group = {"name": "far", "node_count": 1, "labels": {"availability_zone": "zone-2"}}
    r = _magnum(c, "POST", f"/clusters/{uuid}/nodegroups", json=group)
    assert r.status_code == 202, r.text
    _wait(c, uuid, "UPDATE_COMPLETE")
    return uuid


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Far]:
    try:
        engine_or_skip().inspect_image(NODE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{NODE_IMAGE} is missing: run scripts/lib.sh build_swarm_node_image")
    work = tmp_path_factory.mktemp("swarm-far")
    with overlay_cloud(work, SPECS, images=(NODE_IMAGE,)) as c:
        for engine in c.engines.values():
            _as_in_repo(engine.client)
        uuid = _create(c)
        try:
            shown = _magnum(c, "GET", f"/clusters/{uuid}").json()
            mine = [n for n in c.containers().values() if n["name"].startswith(uuid[:8])]
            nodes = {c.runs_on(n["uuid"])[0]: c.show(n["uuid"]) for n in mine}
            yield Far(c, shown, nodes, _user_certs(c, uuid, work / "certs"))
        finally:
            r = _magnum(c, "DELETE", f"/clusters/{uuid}")
            assert r.status_code in (204, 404), r.text
            wait_until(
                lambda: _magnum(c, "GET", f"/clusters/{uuid}").status_code == 404,
                180,
                "the cluster to be deleted",
                poll=2,
            )
            c.delete_all()


def test_the_nodes_run_on_two_hosts_and_the_api_address_is_the_masters_published_port(
    far: Far,
) -> None:
    assert sorted(far.nodes) == ["swx-1", "swx-2"]
    master, worker = far.nodes["swx-1"], far.nodes["swx-2"]
    prefix = far.cluster["uuid"][:8]
    assert master["name"].startswith(f"{prefix}-default-master-0-"), master["name"]
    assert worker["name"].startswith(f"{prefix}-far-0-"), worker["name"]
    assert far.cluster["api_address"] == far.endpoint("swx-1")
    address = next(iter(master["addresses"].values()))[0]["addr"]
    assert far.cluster["master_addresses"] == [address]
    assert far.cluster["node_addresses"] == [next(iter(worker["addresses"].values()))[0]["addr"]]


def test_both_nodes_are_ready_in_the_swarm(far: Far) -> None:
    listed = far.docker(far.cluster["api_address"], "node", "ls", "--format", "{{.Hostname}} "
                        "{{.Status}} {{.ManagerStatus}}")  # fmt: skip
    rows = sorted(line.split() for line in listed.splitlines())
    names = sorted(n["name"] for n in far.nodes.values())
    assert rows == sorted(
        [name, "Ready", "Leader"] if "master" in name else [name, "Ready"] for name in names
    ), listed
    # The worker's dockerd answers on its own host too, verified by that address.
    assert far.docker(far.endpoint("swx-2"), "info", "--format", "{{.Swarm.LocalNodeState}}") == (
        "active"
    )


def test_the_swarms_networks_fit_in_the_nodes_mtu(far: Far) -> None:
    mtu = '{{index .Options "com.docker.network.driver.mtu"}}'
    manager = far.cluster["api_address"]
    # (an overlay network's option is the MTU of the link under it: its interfaces get 50 less)
    assert far.docker(manager, "network", "inspect", "ingress", "-f", mtu) == str(OVERLAY_MTU)
    for host in far.nodes:
        node = far.endpoint(host)
        assert far.docker(node, "network", "inspect", "bridge", "-f", mtu) == str(OVERLAY_MTU)
        assert far.docker(node, "network", "inspect", "docker_gwbridge", "-f", mtu) == str(
            OVERLAY_MTU
        )


def _task(far: Far, host: str) -> tuple[str, str]:
    """The service task's container on ``host``'s node and its address on ``big``."""
    node = far.endpoint(host)
    ids = far.docker(node, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=big")
    assert len(ids.split()) == 1, ids
    ip = far.docker(node, "inspect", "-f", '{{(index .NetworkSettings.Networks "big").IPAddress}}',
                    ids)  # fmt: skip
    return ids, ip


def test_a_services_tasks_on_two_hosts_move_64_kib_over_a_swarm_overlay(far: Far) -> None:
    manager = far.cluster["api_address"]
    image = b"".join(engine_or_skip().get_image(TEST_IMAGE))
    for host in far.nodes:
        far.docker(far.endpoint(host), "load", stdin=image)
    far.docker(manager, "network", "create", "-d", "overlay",
               "--opt", f"com.docker.network.driver.mtu={OVERLAY_MTU}", "big")  # fmt: skip
    far.docker(manager, "service", "create", "--detach", "--name", "big", "--replicas", "2",
               "--replicas-max-per-node", "1", "--network", "big", "--no-resolve-image",
               TEST_IMAGE, "sh", "-c", SERVE)  # fmt: skip

    def running() -> bool:
        states = far.docker(manager, "service", "ps", "big", "--filter", "desired-state=running",
                            "--format", "{{.Node}} {{.CurrentState}}")  # fmt: skip
        lines = states.splitlines()
        return len(lines) == 2 and all(" Running " in f"{line} " for line in lines)

    wait_until(running, 120, "both tasks of the service to run", poll=2)
    tasks = {host: _task(far, host) for host in far.nodes}
    for here, there in (("swx-1", "swx-2"), ("swx-2", "swx-1")):
        node, (box, _) = far.endpoint(here), tasks[here]
        _, ip = tasks[there]
        assert far.docker(node, "exec", box, "cat", "/sys/class/net/eth0/mtu") == str(
            OVERLAY_MTU - 50
        )
        fetch = (
            f"wget -q -O /tmp/got http://{ip}:8080/blob && wc -c < /tmp/got"
            f" && md5sum < /tmp/got && wget -q -O - http://{ip}:8080/sum"
        )
        size, got, want = far.docker(node, "exec", box, "sh", "-c", fetch).splitlines()
        assert (int(size), got) == (SIZE, want), f"{here} -> {there}"
