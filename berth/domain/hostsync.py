"""What the control plane and an agent tell each other (plain data, no I/O).

The agent pulls a ``DesiredHost`` (every container assigned to its host, with
the state the user wants), compares it with what runs, acts, and pushes one
``Observation`` per container it looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DesiredContainer",
    "DesiredHost",
    "HostReport",
    "IngressRule",
    "InjectedFile",
    "NetworkRef",
    "Observation",
    "PendingOp",
    "RegistryAuth",
    "RemoteMember",
    "Segment",
    "VolumeMount",
    "docker_mac",
]

DesiredStateName = Literal["created", "running", "stopped", "paused", "deleted"]
ObservedStateName = Literal[
    "absent", "created", "running", "stopped", "paused", "restarting", "dead", "removing"
]


@dataclass(slots=True)
class PendingOp:
    """A one-shot operation (not a level state): reboot, kill or rebuild.

    ``id`` is the request id; the agent reports it back as done, so an op is
    applied once even if the agent restarts in between.
    """

    id: str
    op: Literal["reboot", "kill", "rebuild"]
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RegistryAuth:
    """Credentials for pulling from (or pushing to) ``registry`` (``host[:port]``).

    Sent to an agent only alongside the pull or push that needs them; the
    password never appears in a repr (and so in no log line).
    """

    registry: str
    username: str
    password: str = field(repr=False)


@dataclass(slots=True)
class VolumeMount:
    """A Berth volume the container needs on its host (the volume driver names it).

    ``destination`` None: only make sure the volume exists (a capsule's sandbox
    holds every capsule volume). ``owner`` set: the volume belongs to that
    container and is removed with it (``--mount size=N``, capsule ``autoRemove``).
    """

    volume_uuid: str
    destination: str | None = None
    read_only: bool = False
    size: int = 1
    owner: str | None = None
    # An admin's host-path bind mount (no volume): ``volume_uuid`` is empty.
    host_path: str | None = None


@dataclass(slots=True)
class InjectedFile:
    """A file Zun's ``mounts`` ``type=bind`` injects, written before the container starts.

    The desired state carries ``destination`` and ``size`` only, so the long poll
    stays small; the agent fetches the content (``data``, base64) from the
    control plane when it creates the container (``ControlPlane.files``).
    """

    destination: str
    size: int
    data: str | None = field(default=None, repr=False)


def docker_mac(address: str) -> str:
    """The MAC Docker (20.10) gives an endpoint with this IPv4 address: ``02:42`` and its bytes.

    What the overlay announces for a member whose host has not reported its MAC yet.
    """
    octets = [int(part) for part in address.split(".")]
    return ":".join(f"{b:02x}" for b in (0x02, 0x42, *octets))


@dataclass(slots=True)
class Segment:
    """A project network's overlay segment, the same on every host (the control plane's IPAM).

    ``subnet`` and ``gateway`` (each host's bridge answers as the gateway for its
    own members), the VXLAN network identifier, and the MTU containers get (the
    underlay's minus the VXLAN header).
    """

    subnet: str
    gateway: str
    vni: int
    mtu: int = 1450


@dataclass(slots=True)
class NetworkRef:
    """A project network a container joins: Berth's network id and its project.

    With the overlay driver, ``address`` is the container's IPv4 address on it
    (leased by the control plane, unique across hosts) and ``segment`` says how
    the network is laid out; both None with the per-host bridge driver, whose
    engine picks the addresses.
    """

    id: str
    name: str
    project_id: str
    address: str | None = None
    segment: Segment | None = None


@dataclass(slots=True)
class RemoteMember:
    """A member of a project network that runs on another host (overlay driver).

    The agent forwards to ``mac`` through the VXLAN tunnel to ``host_ip`` (that
    host's underlay address) and answers ARP for ``address`` with ``mac``.
    ``security_groups`` lets remote-group rules admit it like a local member.
    """

    address: str
    mac: str
    host_ip: str
    security_groups: list[str] = field(default_factory=list)


@dataclass(slots=True)
class IngressRule:
    """One allowed kind of incoming traffic (the union of a container's security groups).

    ``protocol`` None means any; ports only with tcp/udp (None: every port).
    The source is ``remote_cidr``, or the members of ``remote_group`` (the
    agent resolves it to the addresses of those containers on its host), or
    anywhere when both are None.
    """

    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_cidr: str | None = None
    remote_group: str | None = None


@dataclass(slots=True)
class PublishedPort:
    """A container port published on a host port the engine picks."""

    port: int
    protocol: str = "tcp"


@dataclass(slots=True)
class DesiredContainer:
    uuid: str
    name: str
    project_id: str
    image: str
    desired_state: DesiredStateName
    spec_version: int
    command: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cpu: float | None = None
    cpuset: list[int] | None = None
    memory: int | None = None
    workdir: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    restart_policy: dict[str, Any] | None = None
    auto_remove: bool = False
    auto_heal: bool = False
    healthcheck: dict[str, Any] | None = None
    interactive: bool = False
    tty: bool = False
    image_pull_policy: str | None = None
    runtime: str | None = None
    privileged: bool = False
    # Internal only (never from the API): "dind" = the Docker-in-Docker options
    # of a cluster node (see berth.runtimes.dockermap.DIND_HOST_OPTIONS).
    node_profile: str | None = None
    pending_ops: list[PendingOp] = field(default_factory=list)
    stop_timeout: int = 10
    # When the user last changed desired_state (ISO 8601; naive means UTC). A
    # stopped container is started again only if it last started before this:
    # otherwise it ran and exited on its own, and is reported, not restarted.
    desired_since: str | None = None
    # The spec_version the runtime container already reflects (as last reported).
    applied_spec_version: int = 0
    # The runtime id last reported; set means "it existed", so a vanished
    # container is recreated only with auto_heal.
    runtime_id: str | None = None
    # Set after an error: the agent must neither act on nor garbage-collect this
    # container until the user asks for something again (start, reboot, delete).
    held: bool = False
    # Credentials for pulling ``image``: present only while the container has no
    # runtime container yet (a pull may be ahead), from the project's registry
    # or for the image store.
    registry_auth: RegistryAuth | None = field(default=None, repr=False)
    # ``image`` is a Glance image's local name (berth-glance/<id>:<checksum>): when the
    # host lacks it, the agent fetches its data from the control plane and loads it.
    from_glance: bool = False
    # Networking (berth.networks): the networks to join, the first one at create;
    # the security groups (ids) it is a member of; the ingress its groups allow
    # (None: no firewall at all); the ports to publish on the host.
    networks: list[NetworkRef] = field(default_factory=list)
    # Every project network was detached (Zun's network_detach of the last one):
    # the container keeps running with loopback only until one is attached.
    no_network: bool = False
    security_groups: list[str] = field(default_factory=list)
    ingress: list[IngressRule] | None = None
    published_ports: list[PublishedPort] = field(default_factory=list)
    # Data volumes (created by the host's volume driver before the container).
    volumes: list[VolumeMount] = field(default_factory=list)
    # Files to write into the container after each create, before it starts.
    files: list[InjectedFile] = field(default_factory=list)
    # A capsule member joins the network namespace of its sandbox (this uuid).
    network_container: str | None = None


@dataclass(slots=True)
class DesiredHost:
    """A host's desired state: everything, or (``base`` set) what changed since ``base``.

    The incremental protocol (an agent that sends ``since=<epoch>:<revision>``):
    ``epoch`` and ``revision`` say which state the answer brings the agent to.
    With ``base`` None the answer is the whole state (a resync); otherwise it
    holds only the containers changed after revision ``base`` (replace them
    whole) and ``removed``, those no longer on the host, and applies only to
    an agent at exactly ``epoch``:``base``. ``epoch`` empty: the control plane
    answered the full-state protocol (by ``generation``) and the agent stays on it.
    """

    hostname: str
    generation: int
    containers: list[DesiredContainer] = field(default_factory=list)
    # Overlay driver: per network id with a member on this host, its members on
    # other hosts (absent: no overlay, or nobody elsewhere).
    remote_members: dict[str, list[RemoteMember]] = field(default_factory=dict)
    epoch: str = ""
    revision: int = 0
    base: int | None = None
    removed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Observation:
    """What the agent saw (and did) for one container.

    ``state`` ``absent`` means no runtime container exists. ``error`` is set when
    the agent could not reach the desired state; it becomes the status_reason.
    ``done_ops`` lists PendingOp ids applied; ``spec_version`` the version applied.
    """

    uuid: str
    state: ObservedStateName
    spec_version: int
    runtime_id: str | None = None
    status_detail: str | None = None
    error: str | None = None
    exit_code: int | None = None
    started_at: str | None = None
    addresses: dict[str, Any] | None = None
    done_ops: list[str] = field(default_factory=list)
    removed: bool = False
    # ``"<port>/<protocol>"`` -> the host port it is published on.
    published: dict[str, int] | None = None
    # IPv4 address -> the MAC address its interface has (the overlay tells other
    # hosts where to send); None: nothing to say.
    macs: dict[str, str] | None = None


@dataclass(slots=True)
class HostReport:
    """An agent's registration: its host's capacity and capabilities."""

    hostname: str
    cpus: int
    mem_total: int
    disk_total: int
    runtimes: list[str]
    agent_url: str
    availability_zone: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    architecture: str | None = None
    os_type: str | None = None
    os: str | None = None
    kernel_version: str | None = None
    enable_cpu_pinning: bool = False
    disk_quota_supported: bool = False
    # The images present on the host as ``repo:tag`` (for the image-locality weigher).
    images: list[str] = field(default_factory=list)
    # The address other hosts reach this one's VXLAN tunnel endpoint at (overlay driver).
    underlay_ip: str | None = None
