"""One typed Settings object for every Berth process.

Values come from, in order of precedence: keyword arguments, ``BERTH_*``
environment variables, then a YAML file named by ``BERTH_CONFIG``. The object
is built once at process start and passed in; nothing reads it globally.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["DEFAULT_CLUSTER_FLAVORS", "ClusterFlavor", "Settings", "load_settings"]


class ClusterFlavor(BaseModel):
    """A cluster node size: the CPUs and memory of one node container."""

    cpu: float = Field(gt=0)
    memory_mb: int = Field(gt=0)


# Nova's m1 and devstack's ds flavors, scaled for nodes that are containers.
DEFAULT_CLUSTER_FLAVORS: dict[str, ClusterFlavor] = {
    name: ClusterFlavor(cpu=cpu, memory_mb=mem)
    for name, cpu, mem in (
        ("m1.tiny", 0.5, 512),
        ("m1.small", 1.0, 1024),
        ("m1.medium", 1.0, 2048),
        ("m1.large", 2.0, 4096),
        ("m1.xlarge", 4.0, 8192),
        ("ds512M", 1.0, 512),
        ("ds1G", 1.0, 1024),
        ("ds2G", 2.0, 2048),
        ("ds4G", 4.0, 4096),
    )
}


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the optional YAML file named by ``BERTH_CONFIG``."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("BERTH_CONFIG")
        if not path:
            return {}
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config file must hold a mapping")
        return data


def _host_port(entry: Any) -> str:
    """``5000``, ``"5000"``, ``"53/udp"`` → ``"5000/tcp"``, ``"53/udp"``; else a clear error."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*(?:/\s*(tcp|udp)\s*)?", str(entry), re.IGNORECASE)
    if isinstance(entry, bool) or match is None or not 1 <= int(match.group(1)) <= 65535:
        raise ValueError(f"{entry!r} is not a host port: give <1-65535>[/tcp|/udp], e.g. 5000/tcp")
    return f"{int(match.group(1))}/{(match.group(2) or 'tcp').lower()}"


class Settings(BaseSettings):
    """Everything a Berth process can be told. Safe defaults: all-in-one needs none."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="forbid")

    # -- where state lives
    data_dir: Path = Field(default=Path(".berth"), description="state directory")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in data_dir"
    )

    # -- the API process
    bind_host: str = "127.0.0.1"
    port: int = 9517
    keep_alive_seconds: int = Field(
        default=75,
        gt=0,
        description=(
            "how long an idle client connection is kept open; above the clients' poll "
            "intervals (the openstack CLI's --wait polls every 5 s)"
        ),
    )
    request_head_seconds: float = Field(
        default=10.0,
        ge=0,
        description=(
            "how long a request's head (request line and headers) may take to arrive before "
            "the connection is answered 408 and closed (0: no limit); berth/cli/connguard.py"
        ),
    )
    request_idle_seconds: float = Field(
        default=60.0,
        ge=0,
        description="the longest silence while a request body is received (0: no limit)",
    )
    max_connections_per_client: int = Field(
        default=256,
        ge=0,
        description=(
            "connections open at once from one client address; more are answered 503 "
            "(0: no limit, e.g. behind a proxy, where every client has its address)"
        ),
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        description=(
            "connections open at once in one server process (kept below its open-files "
            "limit); more are answered 503"
        ),
    )
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "API worker processes serving the one port (berth/cli/serve_workers.py); above 1 "
            "needs PostgreSQL: SQLite is one writer, so berth-api refuses to start"
        ),
    )
    public_url: str | None = Field(
        default=None, description="base URL put in the catalog; default http://bind_host:port"
    )
    region: str = "RegionOne"
    max_request_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description=(
            "largest request body of the APIs (413 above); image uploads, put_archive and "
            "agent reports have their own limits"
        ),
    )
    max_json_depth: int = Field(
        default=32,
        gt=0,
        description=(
            "deepest nesting of a JSON request body (400 deeper); the stock clients' deepest "
            "bodies (capsule templates, Keystone auth) nest under 10"
        ),
    )
    max_agent_report_bytes: int = Field(
        default=32 * 1024 * 1024,
        gt=0,
        description="largest body an agent may send on /internal (a busy host's observations)",
    )
    image_upload_max_bytes: int = Field(
        default=16 * 1024**3,
        gt=0,
        description="largest 'docker save' archive POST /v1/images/upload accepts",
    )
    # An upload is written to the API's data directory whole before it is pushed: the
    # number running at once bounds that disk (and the image store's pushes).
    max_uploads_per_project: int = Field(
        default=1,
        ge=0,
        description=(
            "image uploads one project may run at once in one API process (0: no limit); "
            "one more is a 403 before its archive is read"
        ),
    )
    max_uploads: int = Field(
        default=4,
        ge=0,
        description="image uploads running at once in one API process (0: no limit)",
    )
    policy_file: Path | None = None

    # -- identity
    admin_username: str = "admin"
    admin_project: str = "admin"
    admin_password: str | None = Field(
        default=None, description="first-start admin password; generated when unset"
    )
    token_ttl_seconds: int = 3600 * 8
    # Tokens are rows until they expire: a loop of cheap re-scopes would grow the
    # table at the client's rate. Keystone's fernet tokens are not stored at all.
    max_tokens_per_user: int = Field(
        default=10_000,
        ge=1,
        description=(
            "most live tokens one user holds; issuing more ends the oldest tenth "
            "(keystoneauth clients authenticate again on the 401)"
        ),
    )
    token_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description=(
            "how long a validated token is remembered in-process (0: check the database on "
            "every request); identity changes empty the cache at once"
        ),
    )

    # -- an external Keystone (docs/operators.md "Berth in an existing OpenStack cloud"):
    # with identity_backend = keystone, tokens are Keystone's and /identity is not served
    identity_backend: Literal["builtin", "keystone"] = Field(
        default="builtin",
        description="builtin: Berth is its own Keystone; keystone: tokens are keystone_url's",
    )
    keystone_url: str | None = Field(
        default=None,
        description="the Keystone the clients use, e.g. http://keystone:5000 (/v3 optional)",
    )
    keystone_service_username: str = Field(
        default="berth", description="Berth's service user in Keystone (validates tokens)"
    )
    keystone_service_password: str | None = Field(
        default=None, description="its password (berth openstack register sets it)"
    )
    keystone_agent_username: str = Field(
        default="berth-agent",
        description="the user standalone agents log in to Keystone as (password: agent_password)",
    )
    keystone_service_project: str = "service"
    keystone_service_user_domain: str = "Default"
    keystone_service_project_domain: str = "Default"
    keystone_token_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "how long a token Keystone validated is remembered; a token revoked in Keystone "
            "is refused within this interval (0: ask Keystone on every request)"
        ),
    )
    keystone_token_cache_size: int = Field(
        default=10_000, ge=1, description="most validated tokens remembered at once"
    )
    keystone_timeout: float = Field(
        default=10.0, gt=0, description="seconds a call to Keystone may take (503 beyond)"
    )
    # -- the cloud's Glance (docs/operators.md): with identity_backend = keystone and
    # glance_url set, image_driver=glance means that Glance, not the embedded image store
    glance_url: str | None = Field(
        default=None,
        description=(
            "the cloud's Glance, e.g. http://glance:9292 (only with identity_backend = "
            "keystone); image_driver=glance then runs Glance images of container_format docker"
        ),
    )
    glance_image_max_bytes: int = Field(
        default=2 << 30,
        ge=1,
        description="largest Glance image (its docker save data) a container may run or commit",
    )
    glance_timeout: float = Field(
        default=600.0,
        gt=0,
        description="seconds a Glance download or upload may take; a lookup takes keystone_timeout",
    )

    # -- login throttling: backoff on failed passwords (API and dashboard), per user and
    # per client address; see berth/services/identity/throttle.py for why both
    login_failures_per_user: int = Field(
        default=5, ge=1, description="failed passwords for one user before logins back off"
    )
    login_failures_per_source: int = Field(
        default=30, ge=1, description="failed passwords from one address before it backs off"
    )
    login_failure_window_seconds: float = Field(
        default=900.0, gt=0, description="failures are forgotten this long after the last one"
    )
    login_backoff_seconds: float = Field(
        default=2.0, gt=0, description="the first lock-out; doubled for each further failure"
    )
    login_backoff_max_seconds: float = Field(
        default=900.0, gt=0, description="the longest lock-out"
    )
    # A password check is scrypt (~50 ms of a core, 16 MiB); checks run on two threads
    # of their own per API process, two of one client at a time, the others waiting.
    max_password_checks_per_client: int = Field(
        default=32,
        ge=1,
        description=(
            "password checks (logins, password changes) of one client address (or of one "
            "user changing its password) waiting or running at once in an API process; "
            "one more is a 429 to retry in a second"
        ),
    )
    max_password_checks: int = Field(
        default=256,
        ge=1,
        description="password checks waiting or running at once in an API process (429 above)",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For names the "
            "client; empty: the header is ignored and the peer address is the client"
        ),
    )

    # -- container API defaults (Zun's names and values)
    default_cpu: float = 1.0
    default_memory: int = 512
    minimum_cpus: float = 0.1
    maximum_cpus: float = 16.0
    minimum_memory: int = 4
    maximum_memory: int = 8192
    minimum_disk: int = 1
    maximum_disk: int = 160
    max_limit: int = 1000
    unique_container_name_scope: Literal["", "project", "global"] = ""
    default_availability_zone: str = "nova"
    default_schedule_zone: str | None = None
    container_runtime: str = "runc"
    image_driver_list: list[str] = Field(default_factory=lambda: ["glance", "docker"])
    default_image_driver: str = "docker"
    execute_timeout: float = 5.0
    # A non-interactive exec's output is held in memory by the agent and the API, then
    # sent as JSON (a NUL is six bytes there): 100 MB of it took 2 GB of an all-in-one.
    execute_max_output_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        le=1024**3,
        description="most output a non-interactive exec may write; more is a 400",
    )
    container_pids_limit: int = Field(
        default=4096,
        ge=0,
        description=(
            "the most processes one tenant container may run (the engine's pids cgroup), so "
            "a fork bomb stays inside its container; 0: no cap"
        ),
    )
    container_log_max_mb: int = Field(
        default=10,
        ge=0,
        description=(
            "the size of each of a container's 3 engine log files (json-file, rotated), so "
            "its output cannot fill the host's disk; 0: no cap"
        ),
    )

    # -- images: the image store (Berth's Glance stand-in) and secrets at rest
    image_store: str | None = Field(
        default=None, description="host:port of the image store (an OCI registry); unset: none"
    )
    image_registry_allowlist: list[str] = Field(
        default_factory=list,
        description=(
            "host[:port] of registries on loopback, link-local or Berth hosts' own addresses "
            "that projects may still pull from (the image store always may)"
        ),
    )
    image_store_username: str | None = None
    image_store_password: str | None = None
    secret_key_file: Path | None = Field(
        default=None, description="Fernet key for registry passwords; default data_dir/secret.key"
    )
    image_pull_timeout: float = Field(
        default=600.0, description="seconds an image pull or commit on a host may take"
    )

    # -- interactive sessions (exec/attach websockets) and file copy
    stream_token_ttl: float = Field(
        default=60.0, gt=0, description="seconds an attach/exec URL may wait to be opened"
    )
    stream_idle_timeout: float = Field(
        default=900.0, gt=0, description="seconds without traffic that end a session"
    )
    max_streams_per_project: int = Field(
        default=64,
        ge=0,
        description=(
            "exec/attach sessions and followed logs one project may have open at once in one "
            "API process (0: no limit); each holds an engine session and a thread on its host"
        ),
    )
    max_streams: int = Field(
        default=1024,
        ge=0,
        description="sessions and followed logs open at once in one API process (0: no limit)",
    )
    # An interactive exec is made on its host's engine when it is asked for, before its
    # URL is opened (Docker keeps an exec that never started until its container goes),
    # and its token is a row: without a bound a loop of them grows both.
    max_unopened_sessions_per_project: int = Field(
        default=64,
        ge=0,
        description=(
            "interactive exec and attach URLs one project may hold not yet opened and not "
            "expired (0: no limit); one more is a 403"
        ),
    )
    # uvicorn's default lets a session's websocket hold a message of 16 MiB in the API
    # process (1 GiB for a project's 64 sessions); a terminal sends keystrokes and
    # pastes, so a far smaller message does.
    stream_max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=4096,
        description=(
            "largest websocket message (a session's input, a paste) the API accepts; a "
            "larger one closes the session with 1009 (message too big)"
        ),
    )
    stream_allowed_origins: list[str] = Field(
        default_factory=list,
        description="extra Origin host names a websocket may come from (besides Host's)",
    )
    archive_max_bytes: int = Field(
        default=100 * 1024 * 1024, gt=0, description="largest tar that cp copies either way"
    )
    # A log read (not followed) holds the whole log several times over while it passes
    # through (engine bytes, text, the agent's JSON, the API's): one of 17 MB took
    # about 100 MB of the API process, so reads wait their turn past these counts.
    max_log_reads_per_project: int = Field(
        default=4,
        ge=0,
        description=(
            "container log reads (not followed) one project may have running at once in one "
            "API process (0: no limit); more wait up to 30 s for a turn, then get a 503"
        ),
    )
    max_log_reads: int = Field(
        default=16,
        ge=0,
        description="log reads (not followed) running at once in one API process (0: no limit)",
    )
    # A command (execute with run=true) holds one of its host's engine threads for up to
    # execute_timeout, a stats sample about a second: a project's many at once would
    # take them from everyone else's.
    max_execs_per_project: int = Field(
        default=8,
        ge=0,
        description=(
            "commands (execute, run=true), top and stats calls one project may have running "
            "at once in one API process (0: no limit); more wait up to 30 s for a turn, "
            "then get a 503"
        ),
    )
    max_execs: int = Field(
        default=32,
        ge=0,
        description=(
            "commands (execute, run=true), top and stats calls running at once in one API "
            "process (0: no limit)"
        ),
    )
    # A commit holds one of its host's engine threads, pauses the container and pushes
    # the image while the request waits: a project's many at once would take the host's
    # threads and the store's bandwidth from everyone else.
    max_commits_per_project: int = Field(
        default=1,
        ge=0,
        description="container commits one project may run at once in one API process "
        "(0: no limit); one more is a 403",
    )
    max_commits: int = Field(
        default=4, ge=0, description="commits running at once in one API process (0: no limit)"
    )
    # A signal that does not stop the container (kill -s USR1) waits in the container's
    # row until its host has delivered it, and each one rewrites that list: without a
    # bound a flood grows the row while the host is slow or away.
    max_waiting_signals: int = Field(
        default=16,
        ge=1,
        description="signals one container may have waiting for its host; one more is a 409",
    )
    # Zun keeps and lists every action of a container; a tenant's loop of signals or
    # resizes would grow that list (and its answer) without end.
    max_actions_per_container: int = Field(
        default=1000,
        ge=10,
        description="actions kept (and listed) per container, the newest; older ones are "
        "dropped as new ones are recorded",
    )
    # A copy holds its tar several times over while it passes through (bytes, base64,
    # JSON): one of 90 MiB took 560 MiB of the API process, so copies are counted.
    max_copies_per_project: int = Field(
        default=2,
        ge=0,
        description="file copies (cp either way) one project may run at once in one API process "
        "(0: no limit)",
    )
    max_copies: int = Field(
        default=4, ge=0, description="file copies running at once in one API process (0: no limit)"
    )
    # Zun's file injection (``mounts`` of type bind): the decoded content is kept in
    # the database and written into the container before it starts.
    # Below max_request_body_bytes (base64 adds a third), so the per-file limit is the
    # one a client meets; the body limit bounds the total of one request.
    inject_file_max_bytes: int = Field(
        default=256 * 1024, ge=0, description="largest file a mount of type bind may inject"
    )
    inject_max_files: int = Field(
        default=10, ge=0, description="most files one container may inject (0: refuse them)"
    )
    # A container's settings are in every view of it (a list of 1,000 holds 1,000 of
    # them), in its host's desired state and in each agent's memory. The body limit
    # alone let one be 1 MiB: a project's list of 40 such was 40 MB built in the API
    # process per request. Zun keeps each of these fields in a MySQL TEXT (64 KiB).
    max_container_spec_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        description=(
            "most bytes a container's stored settings (command, entrypoint, environment, "
            "labels, hints, healthcheck, ports, networks, groups, as JSON) may take; a "
            "capsule's labels, annotations and volumes likewise; more is a 400"
        ),
    )

    # Each exposed port is published on a host port the engine picks, and dockerd's
    # userland proxy runs a process per port and address family (~3 MB each, measured:
    # 50 ports were 100 processes and 322 MB): 40 containers of 256 ports each would
    # be 20,480 processes on the project's hosts, and their ports everyone's.
    max_published_ports_per_project: int = Field(
        default=128,
        ge=0,
        description=(
            "ports one project's containers and capsules may publish on their hosts in all "
            "(exposed_ports; 0: no limit); one more is a 403 before anything is stored"
        ),
    )

    # Records Zun and Magnum keep under no quota: without a cap a loop of creates grows
    # the database, and Magnum's template list is built whole on every request.
    max_registries_per_project: int = Field(
        default=100, ge=0, description="registries one project may keep (0: no limit)"
    )
    max_cluster_templates_per_project: int = Field(
        default=100, ge=0, description="cluster templates one project may keep (0: no limit)"
    )
    max_images_per_project: int = Field(
        default=1000,
        ge=0,
        description="images (commits and uploads) one project may keep in the image store "
        "(0: no limit)",
    )
    # The image store's disk is every project's: without a bound one member's uploads
    # (16 GiB each) could fill it. Zun has no such quota (nor any image quota).
    max_image_bytes_per_project: int = Field(
        default=50 * 1024**3,
        ge=0,
        description="bytes of images (their stored size) one project may keep in the image "
        "store; an upload counts its archive's size, a commit is refused once it is reached "
        "(0: no limit)",
    )
    # Neutron's and Cinder's default quotas are of this order (networks 100, security
    # groups 10, rules 100, volumes 10); every rule is written into each member's host
    # firewall, and the network and group lists are answered whole.
    max_networks_per_project: int = Field(
        default=100,
        ge=0,
        description="networks one project may keep, its default one included (0: no limit)",
    )
    max_security_groups_per_project: int = Field(
        default=20,
        ge=0,
        description="security groups one project may keep, its default one included (0: no limit)",
    )
    max_rules_per_security_group: int = Field(
        default=100, ge=1, le=10000, description="ingress rules one security group may have"
    )
    max_volumes_per_project: int = Field(
        default=100,
        ge=0,
        description="volumes one project may keep (those its containers made included); "
        "a create past it is a 403 (0: no limit)",
    )
    max_nodegroups_per_cluster: int = Field(
        default=50,
        ge=1,
        le=10000,
        description="node groups one cluster may have, its default two included",
    )
    # Every change writes an event (the timeline, the notification relay's outbox) and
    # every request an action; a deleted container's actions can no longer be read.
    event_retention_hours: float = Field(
        default=168.0,
        gt=0,
        le=24 * 3650,
        description="how long events, and the actions of deleted containers, are kept "
        "(events the notification relay has not sent yet are kept until it has)",
    )

    # -- quotas
    quota_containers: int = 40
    quota_memory: int = 51200
    quota_cpu: int = 20
    quota_disk: int = 100

    # -- notifications (Magnum's CADF cluster notifications on RabbitMQ when set)
    notification_url: str | None = Field(
        default=None, description="amqp://user:password@host:port/vhost; unset = events table only"
    )
    notification_exchange: str = "magnum"
    # oslo.messaging's [oslo_messaging_notifications] topics (one), and its
    # [oslo_messaging_rabbit] amqp_durable_queues and rabbit_quorum_queue: as the consumers
    notification_topic: str = Field(default="notifications", min_length=1, max_length=200)
    notification_durable: bool = False
    notification_quorum: bool = False

    @field_validator("notification_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        # amqp:// (aio-pika's) or oslo.messaging's rabbit:// transport URL, one broker.
        if not value:
            return None
        scheme, _, rest = value.partition("://")
        if scheme not in ("amqp", "amqps", "rabbit") or not rest:
            raise ValueError("notification_url must be amqp://, amqps:// or rabbit://")
        if "," in rest.split("/", 1)[0]:
            raise ValueError("notification_url names one broker (no comma-separated hosts)")
        return value

    # -- clusters: the node sizes ``--flavor``/``--master-flavor`` names resolve to, and
    # the cluster quota of a project without its own (Magnum's max_clusters_per_project)
    cluster_flavors: dict[str, ClusterFlavor] = Field(
        default_factory=lambda: dict(DEFAULT_CLUSTER_FLAVORS),
        description="flavor name -> {cpu, memory_mb} of one cluster node container",
    )
    max_clusters_per_project: int = Field(default=20, ge=0)
    max_nodes_per_cluster: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="most nodes (masters included) one cluster may have; checked at the API "
        "and again by the worker before it plans",
    )
    cluster_job_attempts: int = Field(
        default=3,
        ge=1,
        description="times the worker starts one cluster operation (a crash or restart "
        "counts) before it marks the cluster FAILED instead of retrying",
    )
    cluster_health_interval: float = Field(
        default=30.0, gt=0, description="seconds between two health polls of every cluster"
    )
    cluster_node_removal_wait: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="seconds a cluster operation waits for a removed node's host to confirm "
        "the removal before it goes on (a host that does not answer removes it when back)",
    )

    # -- capsules: the sandbox (infra) container that holds a capsule's network namespace
    sandbox_image: str = Field(
        default="busybox:latest", description="image of a capsule's sandbox container"
    )
    sandbox_command: list[str] = Field(
        default_factory=lambda: ["sleep", "2147483647"],
        description="the sandbox's command: it only has to keep running",
    )

    # -- networks: what containers may reach on the host itself (the host guard)
    container_host_ports_allowlist: list[str] = Field(
        default_factory=list,
        description=(
            "ports on the host's own addresses that containers may reach, as <port>[/tcp|/udp] "
            "(the image store's and image_registry_allowlist entries' ports always are)"
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        # Checked at start: a bad entry would otherwise fail every login (a 500).
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an address or a network (CIDR), "
                    "e.g. 10.0.0.5 or 10.0.0.0/24"
                ) from None
        return value

    @field_validator("container_host_ports_allowlist", mode="before")
    @classmethod
    def _host_ports(cls, value: Any) -> Any:
        # Ports given as JSON numbers are welcome too; each is checked and normalised.
        if not isinstance(value, list):
            return value
        return [_host_port(entry) for entry in value]

    # -- networks: how long a host keeps a project's bridge after its last container
    network_idle_seconds: float = Field(
        default=300.0,
        ge=0,
        description="an unused project network is removed from a host after this long",
    )

    # -- networks: the overlay's address plan (network_driver = "overlay", on the API and
    # every agent)
    overlay_local_ip: str | None = Field(
        default=None,
        description=(
            "agent: this host's underlay address, the VXLAN tunnels' end "
            "(default: the source address of the route to control_url)"
        ),
    )
    overlay_pool: str = Field(
        default="10.96.0.0/12", description="control plane: where network subnets are cut from"
    )
    overlay_prefix: int = Field(
        default=24, ge=8, le=29, description="control plane: the size of each network's subnet"
    )
    overlay_mtu: int = Field(
        default=1450,
        ge=576,
        description="the MTU containers get (the underlay's minus VXLAN's 50 bytes)",
    )

    # -- services and heartbeats
    service_down_time: float = 180.0
    heartbeat_interval: float = Field(
        default=60.0,
        gt=0,
        description="a service is heard from at least this often: a worker heartbeats at this "
        "period; an agent's every call (its long polls, reports) counts, so it heartbeats only "
        "after this long without one. Keep it well under service_down_time",
    )
    reconcile_interval: float = 5.0

    # -- scheduler
    cpu_allocation_ratio: float = 16.0
    ram_allocation_ratio: float = 1.5
    disk_allocation_ratio: float = 1.0
    weigher: Literal["spread", "binpack"] = "spread"
    tenant_exclusive_hosts: bool = Field(
        default=False, description="a host serves one project at a time"
    )
    scheduler_candidates: int = Field(
        default=16, ge=0, description="feasible hosts weighed per placement (random); 0: all"
    )
    scheduler_snapshot_ttl: float = Field(
        default=5.0, ge=0, description="seconds a process reuses its host snapshot; 0: never"
    )

    # -- the agent
    agent_host: str = Field(default_factory=socket.gethostname)
    agent_availability_zone: str | None = None
    agent_labels: dict[str, str] = Field(default_factory=dict)
    agent_cpu_pinning: bool = Field(
        default=False, description="this host serves cpu_policy=dedicated containers only"
    )
    agent_facts_interval: float = Field(
        default=60.0, gt=0, description="seconds between checks of the host's facts and images"
    )
    agent_poll_wait: float = Field(
        default=30.0,
        ge=0,
        le=60,
        description="seconds an agent's long poll waits for a change (incremental protocol); "
        "the host is still compared with the engine every reconcile_interval",
    )
    agent_bind_host: str = "127.0.0.1"
    agent_port: int = 9518
    agent_url: str | None = Field(default=None, description="URL the API uses to reach this agent")
    control_url: str | None = Field(default=None, description="control plane URL the agent calls")
    agent_password: str | None = Field(
        default=None, description="service credential shared by agents; generated when unset"
    )
    docker_url: str = "unix:///var/run/docker.sock"
    # The libpod service of the ``podman`` runtime driver (``podman system service``).
    podman_url: str = "unix:///run/podman/podman.sock"
    # The agent's drivers, by their entry-point names (berth.plugins): a package that
    # declares more under the same groups adds choices without touching Berth.
    runtime_driver: str = Field(
        default="docker",
        description="the container engine driver (entry-point group berth.runtimes)",
    )
    network_driver: str = Field(
        default="bridge",
        description=(
            "the network driver (entry-point group berth.networks): bridge (a network per "
            "host) or overlay (one segment across hosts, set on the API and every agent)"
        ),
    )
    volume_driver: str = Field(
        default="local", description="the volume driver (entry-point group berth.volumes)"
    )
    all_in_one: bool = True

    @model_validator(mode="after")
    def _keystone_named(self) -> Settings:
        if self.identity_backend == "keystone" and not self.keystone_url:
            raise ValueError("identity_backend = keystone needs keystone_url (Keystone's URL)")
        if self.glance_url and self.identity_backend != "keystone":
            raise ValueError(
                "glance_url needs identity_backend = keystone (Glance takes its tokens)"
            )
        return self

    @property
    def uses_glance(self) -> bool:
        """Whether image_driver=glance means the cloud's Glance (else the embedded image store)."""
        return self.identity_backend == "keystone" and bool(self.glance_url)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'berth.db'}"

    @property
    def effective_public_url(self) -> str:
        """Base URL (scheme://host:port) that clients are told to use."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.bind_host}:{self.port}"

    @property
    def keystone_v3_url(self) -> str:
        """Keystone's v3 API (``keystone_url`` with ``/v3`` added when it lacks it)."""
        if not self.keystone_url:
            raise ValueError("identity_backend = keystone needs keystone_url")
        base = self.keystone_url.rstrip("/")
        return base if base.endswith("/v3") else f"{base}/v3"

    @property
    def effective_agent_url(self) -> str:
        """URL at which the API reaches this process's agent."""
        if self.agent_url:
            return self.agent_url.rstrip("/")
        return f"http://{self.agent_bind_host}:{self.agent_port}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment and the optional config file."""
    return Settings(**overrides)
