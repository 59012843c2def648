"""Real-engine test support: reach the engine (fail in CI, skip elsewhere), the
test image, and removal of everything a test created."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from berth.networks.bridge import BridgeNetworks
from berth.networks.hostguard import guard_chain
from berth.runtimes.docker import DockerDriver
from berth.runtimes.dockermap import TenantLimits
from berth.volumes.local import LocalVolumeDriver

__all__ = [
    "DOCKER_URL",
    "TEST_IMAGE",
    "docker_driver",
    "engine_or_skip",
    "ensure_test_image",
    "remove_host_guard",
    "remove_owned",
    "remove_owned_networking",
]

DOCKER_URL = os.environ.get("BERTH_DOCKER_URL", "unix:///var/run/docker.sock")
TEST_IMAGE = "berth-test/busybox:latest"

_DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["sh"]
"""


def engine_or_skip() -> Any:
    """A low-level client of the engine; without one, fail in CI and skip elsewhere."""
    try:
        api = docker.APIClient(base_url=DOCKER_URL, version="auto", timeout=60)
        api.ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Docker engine at {DOCKER_URL}: {exc}")
        pytest.skip(f"no Docker engine at {DOCKER_URL}: {exc}")
    return api


def ensure_test_image(api: Any) -> str:
    """The busybox test image, built from the host's static busybox if missing."""
    try:
        api.inspect_image(TEST_IMAGE)
        return TEST_IMAGE
    except docker.errors.ImageNotFound:
        pass
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(busybox, Path(tmp) / "busybox")
        (Path(tmp) / "Dockerfile").write_text(_DOCKERFILE)
        for line in api.build(path=tmp, tag=TEST_IMAGE, rm=True, decode=True):
            if "error" in line:
                raise RuntimeError(f"building {TEST_IMAGE} failed: {line['error']}")
    return TEST_IMAGE


def remove_owned(api: Any, owner: str, *names: str) -> None:
    """Force-remove the named containers and every container labelled with ``owner``."""
    found = api.containers(all=True, filters={"label": f"berth.owner={owner}"})
    for ident in [*names, *(c["Id"] for c in found)]:
        try:
            api.remove_container(ident, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # already being removed (auto_remove)
            if exc.status_code != 409:
                raise
    remove_owned_networking(api, owner)


def remove_owned_networking(api: Any, owner: str) -> None:
    """Remove the project networks and firewall chains the agent of ``owner`` left behind."""
    for net in api.networks(filters={"label": f"berth.owner={owner}"}):
        # Still in use by a container of another engine: nothing of ours.
        with contextlib.suppress(docker.errors.APIError):
            api.remove_network(net["Id"])
    if shutil.which("iptables") is None:
        return
    listing = subprocess.run(
        ["iptables", "-w", "-S", "BERTH-FORWARD"], capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        if f'--comment "berth-isolate {owner} ' in line:  # isolation: the rule only
            words = shlex.split(line)
            subprocess.run(["iptables", "-w", "-D", *words[1:]], capture_output=True, check=False)
        if f'--comment "berth {owner} ' not in line:
            continue
        words = shlex.split(line)
        subprocess.run(["iptables", "-w", "-D", *words[1:]], capture_output=True, check=False)
        chain = words[words.index("-j") + 1]
        subprocess.run(["iptables", "-w", "-F", chain], capture_output=True, check=False)
        subprocess.run(["iptables", "-w", "-X", chain], capture_output=True, check=False)
    remove_host_guard(owner)


def remove_host_guard(owner: str) -> None:
    """Remove the ``INPUT`` jumps and the guard chain of ``owner`` (IPv4 and IPv6)."""
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        listing = subprocess.run(
            [binary, "-w", "-S", "INPUT"], capture_output=True, text=True, check=False
        ).stdout
        for line in listing.splitlines():
            if f'--comment "berth-guard {owner} ' in line:
                words = shlex.split(line)
                subprocess.run([binary, "-w", "-D", *words[1:]], capture_output=True, check=False)
        chain = guard_chain(owner)
        subprocess.run([binary, "-w", "-F", chain], capture_output=True, check=False)
        subprocess.run([binary, "-w", "-X", chain], capture_output=True, check=False)


def docker_driver(owner: str, *, limits: TenantLimits | None = None) -> DockerDriver:
    """A DockerDriver on the test engine for ``owner``, wired to the bridge network and
    local volume drivers as the composition root (``berth.cli.serve``) wires them."""
    return DockerDriver(
        DOCKER_URL,
        owner=owner,
        limits=limits or TenantLimits(),
        networks=BridgeNetworks(DOCKER_URL, owner=owner),
        volumes=LocalVolumeDriver(DOCKER_URL, owner=owner),
    )
