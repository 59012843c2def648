"""An in-memory cloud for the swarm-mode driver: node containers, their dockerds, one swarm.

``FakeCloud`` is a ``NodeProvisioner`` (node containers with addresses) and, through
``connect``, the driver's ``ConnectNodes`` factory: ``FakeNodeApi`` honours the
``NodeApi`` protocol over the same state. It models only what the driver relies on:

- TLS: a client verifies the node's real server certificate (issued by the driver
  with ``pki``) against the CA bundle it was handed and the name it asked for, and
  the node accepts the control plane only while its client CA bundle holds the
  control CA; ``install_certificates`` records the files dropped in
  ``/etc/docker/tls/next/`` and "restarts" dockerd with them (or does not);
- swarm: init, join tokens, join (as the token's role), leave, the node list with
  role / availability / state / labels, node updates and removal;
- tasks: a service's replicas placed on active nodes; a drain moves a node's tasks
  to other active nodes, deleting a container that still runs tasks interrupts them;
- hosts (``FakeCloud(hosts=...)``): each node runs on the host of its
  availability zone and publishes 2376 there; the control plane then reaches a
  node only at ``<host address>:<host port>`` (its private address is not
  routable from the control plane, as on hosts apart); without hosts, only at
  ``<address>:2376`` (one host, no published ports reported);
- the nodes' networks: the MTU each dockerd was started with (``mtu``), each
  node's ``docker_gwbridge`` (made by dockerd with 1500 when the node enters a
  swarm without one) and the MTU the swarm's ``ingress`` overlay is made for
  (the option's value: 1500 at init);
- faults: a node container that never runs (or fails), a dockerd that does not
  answer, keeps its old certificate, is cut off from the swarm, or drops the
  connection of the next few calls of one kind.

Refusals are ``requests.exceptions.HTTPError``s, as the docker SDK's ``APIError``
(a subclass) is for the real client.

Tests only: never registered as a plugin.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from berth.clusters import pki
from berth.clusters.driver import NodeInfo, NodeSpec
from berth.clusters.swarm.nodeapi import NodeApiError, merge_labels

__all__ = ["FakeCloud", "FakeEngine", "FakeNodeApi"]


@dataclass
class FakeEngine:
    """One node container and its dockerd."""

    name: str
    address: str
    image: str
    environment: dict[str, str]
    status: str = "Creating"
    status_reason: str | None = None
    answering: bool = True
    # Calls (by NodeApi method name) whose connection drops, how many more times.
    drops: dict[str, int] = field(default_factory=dict)
    # Calls answered "the swarm does not have a leader" (an election), by call like drops.
    leaderless: dict[str, int] = field(default_factory=dict)
    server_cert_pem: str = ""
    client_ca_pem: str = ""
    tls_drops: list[dict[str, str]] = field(default_factory=list)
    node_id: str | None = None  # its swarm node ID while it is in the swarm
    # Where its host publishes its port 2376 (with ``FakeCloud(hosts=...)``).
    host_address: str | None = None
    host_port: int | None = None
    zone: str | None = None
    mtu: int = 1500  # its dockerd's --mtu (what the `bridge` network says)
    bridges: dict[str, int] = field(default_factory=dict)  # its own networks' MTUs

    def endpoints(self, private_reachable: bool) -> set[str]:
        """Where a client of the control plane reaches this dockerd."""
        found = {f"{self.address}:2376"} if private_reachable else set()
        if self.host_address and self.host_port:
            found.add(f"{self.host_address}:{self.host_port}")
        return found

    def serves(self, bundle_pem: str, name: str) -> bool:
        """Would a TLS client trusting ``bundle_pem`` accept this dockerd as ``name``?"""
        cert = x509.load_pem_x509_certificate(self.server_cert_pem.encode())
        issuers = x509.load_pem_x509_certificates(bundle_pem.encode())
        if not any(_issued_by(cert, ca) for ca in issuers):
            return False
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        try:
            return ipaddress.ip_address(name) in sans.get_values_for_type(x509.IPAddress)
        except ValueError:
            return name in sans.get_values_for_type(x509.DNSName)


def _refused(message: str) -> requests.exceptions.HTTPError:
    """What the docker SDK raises when dockerd refuses a call (its APIError is an HTTPError)."""
    return requests.exceptions.HTTPError(message)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class FakeCloud:
    """Node containers (a ``NodeProvisioner``), their dockerds and the swarm they form.

    ``hosts`` maps availability zones to host addresses (the first: no zone asked);
    ``mtu`` is every node's (its eth0's, which its dockerd takes).
    """

    def __init__(self, hosts: Mapping[str, str] | None = None, mtu: int = 1500) -> None:
        self.hosts = dict(hosts or {})
        self.mtu = mtu
        # The MTU the swarm's ingress network is made for (its option), once it exists.
        self.ingress_mtu: int | None = None
        self.mesh_in_use = False  # a service publishes a port through the ingress network
        self._ports = itertools.count(32768)
        self.lock = threading.RLock()
        self.engines: dict[str, FakeEngine] = {}
        # The swarm's node list, as ``GET /nodes`` returns it, by ID.
        self.swarm: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.tasks: dict[str, int] = {}  # running tasks by swarm node ID
        self.interrupted = 0  # tasks killed with their container (not drained first)
        # What a user watching `docker ps` / `docker node ls` would see happen, in order.
        self.history: list[str] = []
        self.never_running: dict[str, str | None] = {}  # name fragment -> Error reason or None
        self.keeps_old_certificate: set[str] = set()  # nodes whose dockerd ignores new files
        # How many node lists a demoted manager still shows ``ManagerStatus`` in (swarmkit
        # takes it out of raft after the demotion, not with it); a manager that leaves
        # while it is still in raft counts as unreachable, and when the reachable ones
        # are no majority, every manager answers "no leader" for good (as dockerd does).
        self.demotion_lag = 0
        self.demoting: dict[str, int] = {}  # swarm node ID -> node lists left
        self.unreachable_members = 0
        self._addresses = (f"10.0.0.{i}" for i in itertools.count(2))
        self._ids = (f"node{i:03d}" for i in itertools.count(1))

    # -- NodeProvisioner

    async def create_node(self, spec: NodeSpec) -> NodeInfo:
        """Create the container unless it exists; it runs after one look (or never)."""
        with self.lock:
            if spec.name not in self.engines:
                env = dict(spec.environment)
                engine = FakeEngine(
                    spec.name, next(self._addresses), spec.image, env,
                    server_cert_pem=env["BERTH_NODE_TLS_CERT"],
                    client_ca_pem=env["BERTH_NODE_TLS_CA"], mtu=self.mtu,
                )  # fmt: skip
                if self.hosts:
                    engine.zone = spec.availability_zone or next(iter(self.hosts))
                    engine.host_address = self.hosts[engine.zone]
                    engine.host_port = next(self._ports) if 2376 in spec.publish else None
                self.engines[spec.name] = engine
                self.history.append(f"create {spec.name}")
            return self._info(self.engines[spec.name])

    async def inspect_node(self, name: str) -> NodeInfo | None:
        """The container's state; a new one is Creating on the first look."""
        with self.lock:
            engine = self.engines.get(name)
            if engine is None:
                return None
            info = self._info(engine)
            if engine.status == "Creating":
                self._start(engine)
            return info

    async def delete_node(self, name: str) -> None:
        """Remove the container: its dockerd is gone, its swarm entry goes down."""
        with self.lock:
            engine = self.engines.pop(name, None)
            if engine is None:
                return
            self.history.append(f"delete {name}")
            for node_id, node in self.swarm.items():
                if node["Description"]["Hostname"] == name:
                    node["Status"]["State"] = "down"
                    self.interrupted += self.tasks.pop(node_id, 0)

    async def list_nodes(self) -> list[NodeInfo]:
        """Every node container."""
        with self.lock:
            return [self._info(e) for e in self.engines.values()]

    def _start(self, engine: FakeEngine) -> None:
        stuck = [v for k, v in self.never_running.items() if k in engine.name]
        if not stuck:
            engine.status = "Running"
        elif stuck[0] is not None:
            engine.status, engine.status_reason = "Error", stuck[0]

    @staticmethod
    def _info(engine: FakeEngine) -> NodeInfo:
        running = engine.status == "Running"
        return NodeInfo(
            engine.name, engine.status, engine.address if running else None,
            published={2376: engine.host_port} if running and engine.host_port else {},
            host_address=engine.host_address, image=engine.image,
            environment=dict(engine.environment), status_reason=engine.status_reason,
        )  # fmt: skip

    # -- ConnectNodes

    def connect(self, control_ca: pki.CertificateAuthority) -> FakeClients:
        """The driver's node-client factory, authenticating with ``control_ca``."""
        return FakeClients(self, control_ca.cert_pem)

    # -- what a user sees and does

    def swarm_nodes(self) -> dict[str, dict[str, Any]]:
        """``docker node ls``: hostname -> role, availability, state and labels."""
        with self.lock:
            return {
                n["Description"]["Hostname"]: {
                    "role": n["Spec"]["Role"],
                    "availability": n["Spec"]["Availability"],
                    "state": n["Status"]["State"],
                    "labels": dict(n["Spec"].get("Labels") or {}),
                }
                for n in self.swarm.values()
            }

    def quorum_lost(self) -> bool:
        """Raft's members that still answer are no majority (nobody can be leader)."""
        members = sum("ManagerStatus" in n for n in self.swarm.values()) + self.unreachable_members
        return members > 0 and 2 * (members - self.unreachable_members) <= members

    def node_ls(self) -> list[tuple[str, str]]:
        """Every line of ``docker node ls``: (hostname, state), a stale entry included."""
        with self.lock:
            return sorted((n["Description"]["Hostname"], n["Status"]["State"])
                          for n in self.swarm.values())  # fmt: skip

    def partition(self, hostname: str) -> None:
        """The node's dockerd answers, but the swarm's managers no longer hear it (``down``)."""
        with self.lock:
            for node in self.swarm.values():
                if node["Description"]["Hostname"] == hostname:
                    node["Status"]["State"] = "down"

    def add_label(self, hostname: str, key: str, value: str) -> None:
        """``docker node update --label-add key=value <hostname>``."""
        with self.lock:
            node = next(n for n in self.swarm.values() if n["Description"]["Hostname"] == hostname)
            node["Spec"].setdefault("Labels", {})[key] = value

    def start_service(self, replicas: int) -> None:
        """``docker service create --replicas N``: tasks spread over the active nodes."""
        with self.lock:
            for _ in range(replicas):
                self._place()

    def _place(self) -> None:
        active = [
            i for i, n in self.swarm.items()
            if n["Spec"]["Availability"] == "active" and n["Status"]["State"] == "ready"
        ]  # fmt: skip
        if not active:  # nowhere to run: the task stops
            self.interrupted += 1
            return
        target = min(active, key=lambda i: self.tasks.get(i, 0))
        self.tasks[target] = self.tasks.get(target, 0) + 1

    def running_tasks(self) -> int:
        with self.lock:
            return sum(self.tasks.values())


class FakeClients:
    """``NodeClients`` over a ``FakeCloud``, as the control plane (``control_ca_pem``)."""

    def __init__(self, cloud: FakeCloud, control_ca_pem: str) -> None:
        self.cloud, self.control_ca_pem = cloud, control_ca_pem
        self.closed = False

    def connect(
        self, address: str, ca_bundle_pem: str, server_name: str, endpoint: str | None = None
    ) -> FakeNodeApi:
        return FakeNodeApi(self.cloud, self.control_ca_pem, address, ca_bundle_pem, server_name,
                           endpoint or f"{address}:2376")  # fmt: skip

    def close(self) -> None:
        self.closed = True


class FakeNodeApi:
    """The ``NodeApi`` of one fake node (blocking, like the real one)."""

    def __init__(
        self, cloud: FakeCloud, control_ca_pem: str, address: str, bundle: str, server_name: str,
        endpoint: str,
    ) -> None:  # fmt: skip
        self.cloud, self.control_ca_pem = cloud, control_ca_pem
        self.address, self.bundle, self.server_name = address, bundle, server_name
        self.endpoint = endpoint

    def close(self) -> None:
        return None

    # -- the connection

    def _connect(
        self, call: str = "", server_name: str | None = None, bundle: str | None = None
    ) -> FakeEngine:
        """The engine at our endpoint, after a TLS handshake both ways; raises like requests."""
        private = not self.cloud.hosts
        engine = next(
            (e for e in self.cloud.engines.values()
             if self.endpoint in e.endpoints(private) and e.status == "Running"), None,
        )  # fmt: skip
        if engine is None or not engine.answering:
            raise requests.exceptions.ConnectionError(f"{self.endpoint}: connection refused")
        if engine.drops.get(call):
            engine.drops[call] -= 1
            raise requests.exceptions.ConnectionError(f"{self.endpoint}: connection reset")
        if engine.leaderless.get(call):
            engine.leaderless[call] -= 1
            raise requests.exceptions.HTTPError(
                f"500 Server Error for {self.endpoint}/nodes: "
                "The swarm does not have a leader. It's possible that too few managers are online."
            )
        if not engine.serves(bundle or self.bundle, server_name or self.server_name):
            raise requests.exceptions.SSLError(f"{self.address}: certificate verify failed")
        if self.control_ca_pem.strip() not in engine.client_ca_pem:
            raise requests.exceptions.SSLError(f"{self.address}: bad certificate (client)")
        return engine

    def _manager(self, call: str) -> FakeEngine:
        engine = self._connect(call)
        if self.cloud.quorum_lost():
            raise requests.exceptions.HTTPError(
                f"500 Server Error for {self.endpoint}/nodes: "
                "The swarm does not have a leader. It's possible that too few managers are online."
            )
        node = self.cloud.swarm.get(engine.node_id or "")
        if node is None or node["Spec"]["Role"] != "manager":
            raise _refused(f"{engine.name}: this node is not a swarm manager")
        return engine

    def ping(self) -> bool:
        with self.cloud.lock:
            try:
                self._connect("ping")
            except requests.exceptions.RequestException:
                return False
            return True

    def wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        while not self.ping():
            if time.monotonic() > deadline:
                raise NodeApiError(f"dockerd on {self.server_name} did not answer")
            time.sleep(0.001)

    def version(self) -> dict[str, Any]:
        with self.cloud.lock:
            self._connect("version")
            return {"Version": "24.0.9", "ApiVersion": "1.43"}

    # -- certificates

    def serves_name(self, ca_bundle_pem: str, name: str) -> bool:
        with self.cloud.lock:
            try:
                self._connect("serves_name", name, ca_bundle_pem)
            except requests.exceptions.RequestException:
                return False
            return True

    def install_certificates(self, ca_pem: str, cert_pem: str, key_pem: str) -> None:
        with self.cloud.lock:
            engine = self._connect("install_certificates")
            engine.tls_drops.append({"next/ca.pem": ca_pem, "next/cert.pem": cert_pem,
                                     "next/key.pem": key_pem, "next/ready": ""})  # fmt: skip
            if engine.name in self.cloud.keeps_old_certificate:
                return
            # The entrypoint sees "ready" and restarts dockerd with the new files.
            engine.server_cert_pem, engine.client_ca_pem = cert_pem, ca_pem

    # -- swarm

    def swarm_state(self) -> dict[str, Any]:
        with self.cloud.lock:
            engine = self._connect("swarm_state")
            node = self.cloud.swarm.get(engine.node_id or "")
            if node is None:
                return {"LocalNodeState": "inactive", "NodeID": "", "ControlAvailable": False}
            return {"LocalNodeState": "active", "NodeID": engine.node_id,
                    "ControlAvailable": node["Spec"]["Role"] == "manager"}  # fmt: skip

    def _enter(self, engine: FakeEngine, role: str) -> None:
        if engine.node_id in self.cloud.swarm:
            raise _refused(f"{engine.name}: this node is already part of a swarm")
        engine.node_id = next(self.cloud._ids)
        engine.bridges.setdefault("docker_gwbridge", 1500)  # dockerd's own, unless one exists
        self.cloud.swarm[engine.node_id] = {
            "ID": engine.node_id,
            "Description": {"Hostname": engine.name},
            "Spec": {"Role": role, "Availability": "active", "Labels": {}},
            "Status": {"State": "ready", "Addr": engine.address},
        }
        if role == "manager":
            self.cloud.swarm[engine.node_id]["ManagerStatus"] = {"Reachability": "reachable"}
        self.cloud.history.append(f"join {engine.name} {role}")

    def swarm_init(self) -> None:
        with self.cloud.lock:
            engine = self._connect("swarm_init")
            if self.cloud.tokens:
                raise _refused("a second swarm would split the cluster")
            self.cloud.tokens = {"Manager": "SWMTKN-1-manager", "Worker": "SWMTKN-1-worker"}
            self._enter(engine, "manager")
            self.cloud.ingress_mtu = 1500  # made without the option: for 1500-byte links

    def join_tokens(self) -> dict[str, str]:
        with self.cloud.lock:
            self._manager("join_tokens")
            return dict(self.cloud.tokens)

    def swarm_join(self, manager_address: str, token: str) -> None:
        with self.cloud.lock:
            engine = self._connect("swarm_join")
            managers = [e for e in self.cloud.engines.values() if e.address == manager_address
                        and self.cloud.swarm.get(e.node_id or "", {}).get("Spec", {})
                        .get("Role") == "manager"]  # fmt: skip
            if not managers:
                raise _refused(f"{manager_address}:2377 is not a manager")
            roles = {v: k.lower() for k, v in self.cloud.tokens.items()}
            if token not in roles:
                raise _refused("invalid join token")
            self._enter(engine, roles[token])

    def swarm_leave(self) -> None:
        with self.cloud.lock:
            engine = self._connect("swarm_leave")
            node = self.cloud.swarm.get(engine.node_id or "")
            if node is not None:
                node["Status"]["State"] = "down"
                if node.pop("ManagerStatus", None) is not None:  # left raft without removal
                    self.cloud.unreachable_members += 1
                    self.cloud.history.append(f"leave {engine.name} still in raft")
                self.cloud.interrupted += self.cloud.tasks.pop(node["ID"], 0)
                self.cloud.history.append(f"leave {engine.name}")
            engine.node_id = None

    def nodes(self) -> list[dict[str, Any]]:
        with self.cloud.lock:
            self._manager("nodes")
            for node_id, left in list(self.cloud.demoting.items()):
                if left <= 0:  # the role manager has taken it out of raft
                    del self.cloud.demoting[node_id]
                    self.cloud.swarm.get(node_id, {}).pop("ManagerStatus", None)
                else:
                    self.cloud.demoting[node_id] = left - 1
            return copy.deepcopy(list(self.cloud.swarm.values()))

    def update_node(self, node_id: str, **changes: str) -> None:
        with self.cloud.lock:
            self._manager("update_node")
            node = self.cloud.swarm[node_id]
            for key, value in changes.items():
                node["Spec"][key.capitalize()] = value
            if changes.get("role") == "worker" and "ManagerStatus" in node:
                if self.cloud.demotion_lag:
                    self.cloud.demoting[node_id] = self.cloud.demotion_lag
                else:
                    del node["ManagerStatus"]
            elif changes.get("role") == "manager":
                node.setdefault("ManagerStatus", {"Reachability": "reachable"})
            if changes.get("availability") == "drain":
                self.cloud.history.append(f"drain {node['Description']['Hostname']}")
                # The swarm reschedules the node's tasks on the other active nodes.
                for _ in range(self.cloud.tasks.pop(node_id, 0)):
                    self.cloud._place()

    def set_labels(self, node_id: str, labels: Mapping[str, str]) -> bool:
        with self.cloud.lock:
            self._manager("set_labels")
            spec = self.cloud.swarm[node_id]["Spec"]
            wanted = merge_labels(spec.get("Labels") or {}, labels)
            if wanted is None:
                return False
            spec["Labels"] = wanted
            return True

    def remove_node(self, node_id: str) -> None:
        with self.cloud.lock:
            self._manager("remove_node")
            if self.cloud.swarm.pop(node_id, None) is not None:
                self.cloud.interrupted += self.cloud.tasks.pop(node_id, 0)

    def running_tasks_on(self, node_id: str) -> int:
        with self.cloud.lock:
            self._manager("running_tasks_on")
            return self.cloud.tasks.get(node_id, 0)

    # -- the node's own networks

    def inner_mtu(self) -> int | None:
        with self.cloud.lock:
            return self._connect("inner_mtu").mtu

    def ensure_gateway_bridge(self, mtu: int) -> None:
        with self.cloud.lock:
            engine = self._connect("ensure_gateway_bridge")
            if engine.bridges.get("docker_gwbridge", mtu) != mtu and engine.node_id:
                return  # in use by the swarm: dockerd refuses to remove it
            engine.bridges["docker_gwbridge"] = mtu

    def ensure_ingress(self, mtu: int) -> bool:
        with self.cloud.lock:
            self._manager("ensure_ingress")
            current = self.cloud.ingress_mtu
            if current is not None and (current <= mtu or self.cloud.mesh_in_use):
                return False
            self.cloud.ingress_mtu = mtu
            self.cloud.history.append(f"ingress {mtu}")
            return True
