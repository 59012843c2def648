"""Talking to a node's dockerd over mutual TLS with the docker SDK (blocking; run in threads).

The driver sees a node only through the ``NodeApi`` protocol, and gets its
clients from a ``NodeClients`` (one per converge, made by a ``ConnectNodes``
factory handed to the driver): ``TlsNodeClients``/``DockerNodeApi`` here are the
real ones; tests hand in an in-memory swarm.

The control plane dials a node where its host publishes the node's port 2376
(``<host address>:<host port>``: a node's private address is reachable from its
own host and its network's members only, see docs/networking.md), authenticates
with a client certificate from the cluster's *control* CA (which every node
trusts besides the cluster CA) and verifies the node's server certificate
against the CA bundle the node was started with and the node's name, whatever
address it dialled (a node's first certificate cannot name its addresses: they
are known only once the container runs). ``install_certificates`` then gives the
node a certificate that also names its address and its host's, so users'
``docker --tlsverify -H tcp://<address>:<port>`` verifies it.

The node's own networks (``inner_mtu``, ``ensure_gateway_bridge``,
``ensure_ingress``): the swarm's bridge and its ingress overlay are made for the
MTU the node's dockerd was started with (its ``eth0``'s). For an overlay network
``com.docker.network.driver.mtu`` is the MTU of the link *under* it: Docker's
overlay driver gives the network's interfaces 50 bytes less (VXLAN's header;
1450 without the option, measured with Docker 20.10).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
from docker.tls import TLSConfig
from requests.adapters import HTTPAdapter

from berth.clusters import pki

__all__ = [
    "MANAGED_LABELS",
    "ConnectNodes",
    "Credentials",
    "DockerNodeApi",
    "NodeApi",
    "NodeApiError",
    "NodeClients",
    "TlsNodeClients",
    "merge_labels",
]

PORT = 2376
# What swarm's VXLAN adds to every packet of an overlay network inside the nodes.
VXLAN_OVERHEAD = 50
_MTU = "com.docker.network.driver.mtu"
_DEFAULT_MTU = 1500  # a network made without the option
GATEWAY_BRIDGE = "docker_gwbridge"
INGRESS = "ingress"
MANAGED_LABELS = "berth.managed-labels"  # the swarm node labels Berth set, comma-separated
_HELPER_IMAGE = "berth/tls-helper:1"
_HELPER_NAME = "berth-tls-helper"
_TLS_DIR = "/etc/docker/tls"


class NodeApiError(Exception):
    """A node's dockerd did not answer or refused what was asked."""


class NodeApi(Protocol):
    """One node's dockerd, as the swarm-mode driver uses it (blocking calls, run in threads).

    A call a node does not answer or refuses raises a ``requests`` exception (the
    docker SDK's ``APIError`` is one): the converge is retried from the top.
    ``NodeApiError`` (from ``wait_ready``, ``install_certificates``) fails it at once.
    """

    # The node's own address (what swarm advertises) and where the client dials it.
    address: str
    endpoint: str

    def close(self) -> None:
        """Release the connection."""
        ...

    def ping(self) -> bool:
        """True when the node's dockerd answers (never raises)."""
        ...

    def wait_ready(self, within: float) -> None:
        """Return once the dockerd answers; NodeApiError after ``within`` seconds."""
        ...

    def version(self) -> dict[str, Any]:
        """The engine's ``/version`` (``Version``, ``ApiVersion``)."""
        ...

    def serves_name(self, ca_bundle_pem: str, name: str) -> bool:
        """Does the node's server certificate verify against ``ca_bundle_pem`` for ``name``?"""
        ...

    def install_certificates(self, ca_pem: str, cert_pem: str, key_pem: str) -> None:
        """Drop new TLS files into the node; its dockerd restarts with them."""
        ...

    def swarm_state(self) -> dict[str, Any]:
        """The node's ``Info.Swarm`` (``LocalNodeState``, ``NodeID``, ``ControlAvailable``)."""
        ...

    def swarm_init(self) -> None:
        """Make this node the first manager of a new swarm."""
        ...

    def join_tokens(self) -> dict[str, str]:
        """The swarm's ``{"Manager": ..., "Worker": ...}`` join tokens (a manager only)."""
        ...

    def swarm_join(self, manager_address: str, token: str) -> None:
        """Join the swarm of the manager at ``manager_address`` with ``token``."""
        ...

    def swarm_leave(self) -> None:
        """Leave the swarm (forced); no error when not in one."""
        ...

    def nodes(self) -> list[dict[str, Any]]:
        """The swarm's node list as the Engine API returns it (a manager only)."""
        ...

    def update_node(self, node_id: str, **changes: str) -> None:
        """Change a swarm node's Availability and/or Role (``availability=``, ``role=``)."""
        ...

    def set_labels(self, node_id: str, labels: Mapping[str, str]) -> bool:
        """Make ``labels`` Berth's labels of a swarm node (``merge_labels``); False if unchanged."""
        ...

    def remove_node(self, node_id: str) -> None:
        """Force-remove a swarm node entry; no error when it is gone."""
        ...

    def running_tasks_on(self, node_id: str) -> int:
        """How many tasks run on a swarm node."""
        ...

    def inner_mtu(self) -> int | None:
        """The MTU the node's dockerd gives its bridges (``--mtu``); None if it says none."""
        ...

    def ensure_gateway_bridge(self, mtu: int) -> None:
        """``docker_gwbridge`` with ``mtu``, made before the node enters a swarm (which
        would make it with 1500); a wrong one nothing uses is made again."""
        ...

    def ensure_ingress(self, mtu: int) -> bool:
        """The swarm's ``ingress`` overlay made for links of ``mtu`` (a manager only): made
        again when it was made for more and no service publishes a port. True if it did."""
        ...


class NodeClients(Protocol):
    """Makes node clients for one converge, authenticated as the control plane."""

    def connect(
        self, address: str, ca_bundle_pem: str, server_name: str, endpoint: str | None = None
    ) -> NodeApi:
        """A client of the node at ``address`` verifying the server as ``server_name``.

        It dials ``endpoint`` (``host:port``), by default ``<address>:2376``.
        """
        ...

    def close(self) -> None:
        """Forget the control plane's credentials (the clients are closed by their user)."""
        ...


# What the driver is handed: the cluster's control CA in, node clients out.
ConnectNodes = Callable[[pki.CertificateAuthority], NodeClients]


def merge_labels(current: Mapping[str, str], labels: Mapping[str, str]) -> dict[str, str] | None:
    """A swarm node's labels with ``labels`` as Berth's own; None when nothing changes.

    The keys Berth set last time are kept in the label ``berth.managed-labels``:
    those not wanted any more are removed, and labels someone added by hand
    (``docker node update --label-add``) stay.
    """
    rest = dict(current)
    previous = {k for k in rest.pop(MANAGED_LABELS, "").split(",") if k}
    wanted = {k: v for k, v in rest.items() if k not in previous}
    wanted.update(labels)
    wanted[MANAGED_LABELS] = ",".join(sorted(labels))
    return None if wanted == dict(current) else wanted


class _NamedServerAdapter(HTTPAdapter):
    """Verifies the server certificate against a given name instead of the URL's host."""

    def __init__(self, server_name: str) -> None:
        self._server_name = server_name
        super().__init__(pool_connections=1, pool_maxsize=4)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)


class Credentials:
    """The control plane's client certificate and the CA bundles, as files for the SDK."""

    def __init__(self, control_ca: pki.CertificateAuthority) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="berth-swarm-"))
        cert, key = pki.issue(control_ca, "berth-control-plane", server=False)
        self.cert = self._write("client-cert.pem", cert)
        self.key = self._write("client-key.pem", key)

    def _write(self, name: str, text: str) -> str:
        path = self._dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return str(path)

    def bundle(self, pem: str) -> str:
        """A file holding ``pem`` (a CA bundle), written once per content."""
        name = f"ca-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem"
        path = self._dir / name
        if not path.exists():
            self._write(name, pem)
        return str(path)

    def close(self) -> None:
        for child in self._dir.iterdir():
            child.unlink(missing_ok=True)
        self._dir.rmdir()


class TlsNodeClients:
    """The real ``NodeClients``: a client certificate from the control CA, as files."""

    def __init__(self, control_ca: pki.CertificateAuthority) -> None:
        self.creds = Credentials(control_ca)

    def connect(
        self, address: str, ca_bundle_pem: str, server_name: str, endpoint: str | None = None
    ) -> DockerNodeApi:
        """A docker SDK client of the node (see ``NodeClients.connect``)."""
        return DockerNodeApi(self.creds, address, ca_bundle_pem, server_name, endpoint)

    def close(self) -> None:
        """Remove the credential files."""
        self.creds.close()


class DockerNodeApi:
    """One node's dockerd: ``https://<endpoint>``, server verified as ``server_name``."""

    def __init__(
        self, creds: Credentials, address: str, ca_bundle_pem: str, server_name: str,
        endpoint: str | None = None, timeout: float = 30.0,
    ) -> None:  # fmt: skip
        self.address, self.server_name = address, server_name
        self.endpoint = endpoint or f"{address}:{PORT}"
        self._creds = creds
        tls = TLSConfig(
            client_cert=(creds.cert, creds.key), ca_cert=creds.bundle(ca_bundle_pem), verify=True
        )
        self.client = docker.DockerClient(
            base_url=f"https://{self.endpoint}", tls=tls, timeout=int(timeout), version="1.41"
        )
        self.client.api.mount("https://", _NamedServerAdapter(server_name))
        # Not REQUESTS_CA_BUNDLE (it would replace the node's CA) nor proxies.
        self.client.api.trust_env = False

    def close(self) -> None:
        self.client.close()

    # -- basics

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        while not self.ping():
            if time.monotonic() > deadline:
                raise NodeApiError(
                    f"dockerd on {self.server_name} ({self.endpoint}) did not answer "
                    f"within {within:g} s"
                )
            time.sleep(0.5)

    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.version()
        return result

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.info()
        return result

    # -- certificates

    def serves_name(self, ca_bundle_pem: str, name: str) -> bool:
        """Does the node's server certificate verify for ``name`` (e.g. its address)?"""
        probe = DockerNodeApi(
            self._creds, self.address, ca_bundle_pem, name, self.endpoint, timeout=10
        )
        try:
            probe.client.ping()
            return True
        except Exception:
            return False
        finally:
            probe.close()

    def install_certificates(self, ca_pem: str, cert_pem: str, key_pem: str) -> None:
        """Drop new TLS files into the node; its entrypoint restarts dockerd with them.

        The files travel through the node's own dockerd: a never-started helper
        container (from an empty image) bind-mounts the node's TLS directory and
        receives them with ``put_archive``.
        """
        api = self.client.api
        try:
            api.inspect_image(_HELPER_IMAGE)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            empty = io.BytesIO()
            with tarfile.open(fileobj=empty, mode="w"):
                pass
            repo, tag = _HELPER_IMAGE.split(":")
            api.import_image_from_data(empty.getvalue(), repository=repo, tag=tag)
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(_HELPER_NAME, force=True)
        helper = api.create_container(
            _HELPER_IMAGE,
            command=["/none"],
            name=_HELPER_NAME,
            host_config=api.create_host_config(binds=[f"{_TLS_DIR}:/tls:rw"]),
        )
        try:
            files = (("ca.pem", ca_pem, 0o644), ("cert.pem", cert_pem, 0o644),
                     ("key.pem", key_pem, 0o600), ("ready", "", 0o644))  # fmt: skip
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                folder = tarfile.TarInfo("next")
                folder.type, folder.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(folder)
                for name, text, mode in files:  # "ready" last: the entrypoint waits for it
                    data = text.encode()
                    info = tarfile.TarInfo(f"next/{name}")
                    info.size, info.mode = len(data), mode
                    tar.addfile(info, io.BytesIO(data))
            if not api.put_archive(helper["Id"], "/tls", archive.getvalue()):
                raise NodeApiError(f"{self.server_name}: the certificates were not accepted")
        finally:
            api.remove_container(helper["Id"], force=True)

    # -- swarm

    def swarm_state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.info().get("Swarm") or {}
        return state

    def swarm_init(self) -> None:
        self.client.swarm.init(advertise_addr=self.address, listen_addr="0.0.0.0:2377")

    def join_tokens(self) -> dict[str, str]:
        self.client.swarm.reload()
        tokens: dict[str, str] = self.client.swarm.attrs["JoinTokens"]
        return tokens

    def swarm_join(self, manager_address: str, token: str) -> None:
        self.client.swarm.join(
            remote_addrs=[f"{manager_address}:2377"],
            join_token=token,
            listen_addr="0.0.0.0:2377",
            advertise_addr=self.address,
        )

    def swarm_leave(self) -> None:
        try:
            self.client.swarm.leave(force=True)
        except docker.errors.APIError as exc:
            if "not part of a swarm" not in str(exc):
                raise

    def nodes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.api.nodes()
        return result

    def update_node(self, node_id: str, **changes: str) -> None:
        """Change a swarm node's Availability and/or Role (``availability=``, ``role=``)."""
        node = self.client.api.inspect_node(node_id)
        spec = dict(node["Spec"])
        for key, value in changes.items():
            spec[key.capitalize()] = value
        self.client.api.update_node(node_id, node["Version"]["Index"], spec)  # type: ignore[arg-type]

    def set_labels(self, node_id: str, labels: Mapping[str, str]) -> bool:
        """Make ``labels`` Berth's labels of a swarm node (``merge_labels``); False if unchanged."""
        node = self.client.api.inspect_node(node_id)
        spec = dict(node["Spec"])
        wanted = merge_labels(spec.get("Labels") or {}, labels)
        if wanted is None:
            return False
        spec["Labels"] = wanted
        self.client.api.update_node(node_id, node["Version"]["Index"], spec)  # type: ignore[arg-type]
        return True

    def remove_node(self, node_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_node(node_id, force=True)

    def running_tasks_on(self, node_id: str) -> int:
        tasks = self.client.api.tasks(  # type: ignore[no-untyped-call]
            filters={"node": node_id, "desired-state": "running"}
        )
        return sum(1 for t in tasks if t.get("Status", {}).get("State") == "running")

    # -- the node's own networks

    def inner_mtu(self) -> int | None:
        options = self.client.api.inspect_network("bridge").get("Options") or {}
        return _mtu_of(options)

    def _network(self, name: str) -> dict[str, Any] | None:
        found: list[dict[str, Any]] = self.client.api.networks(names=[name])
        return next((n for n in found if n.get("Name") == name), None)

    def ensure_gateway_bridge(self, mtu: int) -> None:
        api = self.client.api
        found = self._network(GATEWAY_BRIDGE)
        if found is not None:
            if _mtu_of(found.get("Options") or {}) == mtu:
                return
            try:
                api.remove_network(found["Id"])
            except docker.errors.APIError:  # in use: the node is in a swarm already
                return
        api.create_network(
            GATEWAY_BRIDGE,
            driver="bridge",
            options={
                "com.docker.network.bridge.name": GATEWAY_BRIDGE,
                "com.docker.network.bridge.enable_icc": "false",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                _MTU: str(mtu),
            },
        )

    def ensure_ingress(self, mtu: int) -> bool:
        api = self.client.api
        found = self._network(INGRESS)
        if found is not None:
            current = _mtu_of(found.get("Options") or {}) or _DEFAULT_MTU
            if not found.get("Ingress") or current <= mtu or self._ingress_in_use():
                return False
            api.remove_network(found["Id"])
        # The old one leaves the swarm's store at once, its sandboxes a moment later.
        deadline = time.monotonic() + 30
        while True:
            try:
                api.create_network(
                    INGRESS, driver="overlay", ingress=True, options={_MTU: str(mtu)}
                )
                return True
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _ingress_in_use(self) -> bool:
        """Does a service publish a port through the routing mesh (``ingress`` mode)?"""
        for service in self.client.api.services():  # type: ignore[no-untyped-call]
            ports = ((service.get("Endpoint") or {}).get("Spec") or {}).get("Ports") or []
            if any(p.get("PublishMode", "ingress") == "ingress" for p in ports):
                return True
        return False


def _mtu_of(options: Mapping[str, Any]) -> int | None:
    value = str(options.get(_MTU, ""))
    return int(value) if value.isdigit() else None
