"""The engine behind the compat suite's agent, seen the same way whichever runtime it is.

The suite runs each runtime-facing module once per runtime (``RUNTIMES``, the
``runtime`` fixture of tests/compat/conftest.py). Berth is driven only through
the stock clients either way; the assertions that look at the engine itself (a
container's limits, mounts, networks, processes, a capsule's pod) ask an
``EngineView``: ``DockerView`` over the Docker SDK, ``PodmanView`` over the
``podman`` CLI (Podman's own ``inspect``, ``top``, ``pod inspect``), so each
answer comes from the engine that runs the containers, in its own words where
those differ.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors

from tests.functional.docker_engine import TEST_IMAGE, remove_owned, remove_owned_networking
from tests.functional.podman_engine import (
    CONTAINERS_CONF,
    load_test_image,
    podman_service,
    remove_podman_owned,
)

__all__ = ["RUNTIMES", "DockerView", "EngineView", "PodmanView", "engine_view"]

RUNTIMES = ("docker", "podman")


class EngineView(abc.ABC):
    """What a test may ask the engine an agent drives; ``settings`` point the agent at it
    (``BERTH_*`` variables)."""

    runtime: str
    settings: dict[str, str]

    @abc.abstractmethod
    def inspect(self, ident: str) -> dict[str, Any]:
        """The container ``ident`` (id or name) as Docker's ``inspect`` shapes it."""

    @abc.abstractmethod
    def containers(self, label: str) -> list[str]:
        """The ids of the containers (any state) carrying ``label`` (``key=value``)."""

    def container(self, uid: str) -> dict[str, Any]:
        """The one container of Berth container ``uid``, inspected."""
        found = self.containers(f"berth.uuid={uid}")
        assert len(found) == 1, f"expected exactly one runtime container for {uid}: {found}"
        return self.inspect(found[0])

    @abc.abstractmethod
    def memory_limit(self, ident: str) -> int:
        """The memory limit (bytes) ``ident`` runs under now, changes included."""

    @abc.abstractmethod
    def processes(self, ident: str) -> list[str]:
        """The command lines of the processes running in ``ident``."""

    @abc.abstractmethod
    def logs(self, ident: str) -> str:
        """Everything ``ident`` wrote to stdout and stderr."""

    @abc.abstractmethod
    def exec(self, ident: str, command: list[str]) -> str:
        """Run ``command`` in ``ident`` and return what it printed."""

    @abc.abstractmethod
    def volumes(self, *labels: str) -> list[dict[str, Any]]:
        """The volumes carrying every one of ``labels``, each with its ``Name`` and ``Labels``."""

    def network_namespace(self, ident: str) -> str:
        """The network namespace ``ident``'s process lives in (``net:[<inode>]``)."""
        return os.readlink(f"/proc/{self.inspect(ident)['State']['Pid']}/ns/net")

    def ran(self, ident: str) -> tuple[float, float]:
        """When ``ident`` last started and finished (Unix seconds; finished 0 if it runs)."""
        state = self.inspect(ident)["State"]
        return _instant(state["StartedAt"]), _instant(state["FinishedAt"])

    @abc.abstractmethod
    def network_exists(self, name: str) -> bool:
        """Whether the engine has a network called ``name``."""

    @abc.abstractmethod
    def has_image(self, ref: str) -> bool:
        """Whether the engine holds the image ``ref``."""

    @abc.abstractmethod
    def remove_image(self, ref: str) -> None:
        """Remove the image ``ref`` if the engine holds it."""

    def pod(self, name: str) -> dict[str, Any] | None:
        """The pod ``name`` as the engine inspects it; None on an engine without pods."""
        return None

    @abc.abstractmethod
    def remove_owned(self, owner: str) -> None:
        """Remove every container, pod, volume, network and firewall chain of ``owner``."""


class DockerView(EngineView):
    """The Docker engine, through the low-level Docker SDK client the suite already holds."""

    runtime = "docker"

    def __init__(self, api: Any) -> None:
        self.api = api
        self.settings = {}

    def inspect(self, ident: str) -> dict[str, Any]:
        info: dict[str, Any] = self.api.inspect_container(ident)
        return info

    def containers(self, label: str) -> list[str]:
        return [c["Id"] for c in self.api.containers(all=True, filters={"label": label})]

    def memory_limit(self, ident: str) -> int:
        return int(self.inspect(ident)["HostConfig"]["Memory"])

    def processes(self, ident: str) -> list[str]:
        return [p[-1] for p in self.api.top(ident)["Processes"] or []]

    def logs(self, ident: str) -> str:
        return str(self.api.logs(ident).decode(errors="replace"))

    def exec(self, ident: str, command: list[str]) -> str:
        exec_id = self.api.exec_create(ident, command)
        return str(self.api.exec_start(exec_id).decode(errors="replace"))

    def volumes(self, *labels: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api.volumes(filters={"label": list(labels)})["Volumes"]
        return found or []

    def network_exists(self, name: str) -> bool:
        return any(n["Name"] == name for n in self.api.networks(names=[name]))

    def has_image(self, ref: str) -> bool:
        try:
            self.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return False
        return True

    def remove_image(self, ref: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_image(ref, force=True)

    def remove_owned(self, owner: str) -> None:
        remove_owned(self.api, owner)
        for volume in self.volumes(f"berth.owner={owner}"):
            self.api.remove_volume(volume["Name"], force=True)


class PodmanView(EngineView):
    """A Podman service, read with the ``podman`` CLI (the same storage the service uses).

    The agent talks to the service at ``url``: the native libpod driver for
    containers and pods, and the network and volume drivers through the
    service's Docker-compatible API (``BERTH_DOCKER_URL``), as a Podman host
    is configured (docs/operators.md).
    """

    runtime = "podman"

    def __init__(self, url: str) -> None:
        self.url = url
        self.settings = {
            "BERTH_RUNTIME_DRIVER": "podman",
            "BERTH_PODMAN_URL": url,
            "BERTH_DOCKER_URL": url,
        }

    @staticmethod
    def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
        )
        if check:
            assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr}"
        return proc

    def _json(self, *args: str) -> Any:
        return json.loads(self._podman(*args).stdout or "null")

    def inspect(self, ident: str) -> dict[str, Any]:
        (info,) = self._json("container", "inspect", ident)
        # Podman names a container without Docker's leading slash.
        info["Name"] = "/" + info["Name"].removeprefix("/")
        return dict(info)

    def containers(self, label: str) -> list[str]:
        out = self._podman("ps", "-a", "--no-trunc", "-q", "--filter", f"label={label}").stdout
        return out.split()

    def memory_limit(self, ident: str) -> int:
        # Podman 4.3's update changes the cgroup, but its inspect and stats go on
        # reporting the limit the container was created with: ask the cgroup (v1 or v2).
        files = "/sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes"
        out = self.exec(ident, ["sh", "-c", f"cat {files} 2>/dev/null"])
        return int(out.split()[0])

    def processes(self, ident: str) -> list[str]:
        out = self._podman("top", ident, "args").stdout.splitlines()
        return [line.strip() for line in out[1:] if line.strip()]

    def logs(self, ident: str) -> str:
        proc = self._podman("logs", ident)
        return proc.stdout + proc.stderr

    def exec(self, ident: str, command: list[str]) -> str:
        return self._podman("exec", ident, *command, check=False).stdout

    def volumes(self, *labels: str) -> list[dict[str, Any]]:
        listed = self._json("volume", "ls", "--format", "json", "--filter", f"label={labels[0]}")
        wanted = dict(label.split("=", 1) for label in labels)
        return [v for v in listed or [] if wanted.items() <= (v.get("Labels") or {}).items()]

    def network_exists(self, name: str) -> bool:
        return self._podman("network", "exists", name, check=False).returncode == 0

    def has_image(self, ref: str) -> bool:
        return self._podman("image", "exists", ref, check=False).returncode == 0

    def remove_image(self, ref: str) -> None:
        self._podman("rmi", "-f", ref, check=False)

    def pod(self, name: str) -> dict[str, Any] | None:
        if self._podman("pod", "exists", name, check=False).returncode != 0:
            return None
        found = self._json("pod", "inspect", name)
        return dict(found[0] if isinstance(found, list) else found)  # 4.3: one object

    def remove_owned(self, owner: str) -> None:
        remove_podman_owned(owner)
        for volume in self.volumes(f"berth.owner={owner}"):
            self._podman("volume", "rm", "-f", volume["Name"], check=False)
        # The networks and chains, as the agent's bridge driver made them: over the
        # service's Docker-compatible API.
        api = docker.APIClient(base_url=self.url, version="auto", timeout=60)
        try:
            remove_owned_networking(api, owner)
        finally:
            api.close()


def _instant(stamp: str) -> float:
    """Unix seconds of an engine's RFC 3339 time stamp (nanoseconds kept as a fraction)."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    assert match, stamp
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return max(moment.timestamp(), 0.0) + float(f"0.{fraction or 0}")


@contextlib.contextmanager
def engine_view(runtime: str, docker_api: Any, workdir: Path) -> Iterator[EngineView]:
    """The view of ``runtime``'s engine, the test image in it (a Podman service started
    in ``workdir`` if none answers, stopped after)."""
    if runtime == "docker":
        yield DockerView(docker_api)
        return
    with podman_service(workdir) as url:
        load_test_image(TEST_IMAGE)
        yield PodmanView(url)
