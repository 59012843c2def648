"""Real-Podman test support: a ``podman system service`` to talk to, and the test image in it.

When none answers at ``BERTH_PODMAN_URL``, each test module starts a service of
its own on a socket in its temporary directory (and stops it after), with
scripts/podman/containers.conf: no default ulimits (Podman raises nofile/nproc
by default, which this sandbox refuses without CAP_SYS_RESOURCE). Services of
their own, because modules run at once in two pytest-xdist workers: one shared
socket would be stopped by the module that started it while the other still
used it. The services share Podman's storage, as two ``podman`` commands do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.docker_engine import TEST_IMAGE

__all__ = [
    "PODMAN_URL",
    "isolated_podman_container",
    "load_test_image",
    "pod_member_states",
    "podman_service",
    "remove_podman_owned",
]

PODMAN_URL = os.environ.get("BERTH_PODMAN_URL", "unix:///run/berth-podman.sock")

CONTAINERS_CONF = Path(__file__).resolve().parents[2] / "scripts" / "podman" / "containers.conf"


_SERVICE = ("system", "service", "--time=0")


def pod_member_states(pod: dict[str, Any]) -> dict[str, str]:
    """Member name -> state of a ``podman pod inspect`` answer, a finished member as
    ``exited``: libpod says ``stopped`` until the member's cleanup process has run, then
    ``exited``, and which one a test sees is a race."""
    states = {c["Name"]: c["State"] for c in pod["Containers"]}
    return {name: "exited" if state == "stopped" else state for name, state in states.items()}


def _answers(path: str) -> bool:
    """Whether the libpod service answers ``_ping`` on the unix socket ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
            sock.sendall(b"GET /v4.0.0/libpod/_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return b" 200 " in sock.recv(256)
    except OSError:
        return False


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI needs Podman (scripts/lib.sh ensure_podman): {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def podman_service(workdir: Path, runtime: str | None = None) -> Iterator[str]:
    """The service's URL: the one answering at ``BERTH_PODMAN_URL``, or one started here on
    ``workdir/podman.sock`` (and stopped after). ``runtime`` (a name in
    scripts/podman/containers.conf, e.g. ``runsc``) starts a service of its own that runs
    every container with that OCI runtime."""
    if runtime is None and _answers(PODMAN_URL.removeprefix("unix://")):
        yield PODMAN_URL
        return
    path = str(workdir / "podman.sock")
    url = f"unix://{path}"
    binary = shutil.which("podman")
    if binary is None:
        _unavailable("podman is not installed (apt-get install podman)")
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    log = (workdir / "service.log").open("wb")
    process = subprocess.Popen(
        [str(binary), *(["--runtime", runtime] if runtime else []), *_SERVICE, url],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not _answers(path):
            if process.poll() is not None and not _answers(path):
                _unavailable(
                    f"podman system service exited: {(workdir / 'service.log').read_text()}"
                )
            if time.monotonic() > deadline:
                _unavailable("podman system service did not answer within 20 s")
            time.sleep(0.1)
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def load_test_image(image: str = TEST_IMAGE) -> str:
    """``image`` from the Docker engine into Podman's storage (no registry here), once."""
    if subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0:
        return image
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    loaded = subprocess.run(
        ["podman", "load"], stdin=save.stdout, capture_output=True, text=True, check=False
    )
    if save.stdout is not None:
        save.stdout.close()
    if save.wait() != 0 or loaded.returncode != 0:
        raise RuntimeError(f"loading {image} into podman failed: {loaded.stderr}")
    return image


def remove_podman_owned(owner: str) -> None:
    """Remove, at once, every pod and container labelled with ``owner``."""
    label = f"label=berth.owner={owner}"
    for kind in (["pod"], []):
        listed = subprocess.run(
            ["podman", *kind, "ps", "-aq" if not kind else "-q", "--filter", label],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        for ident in listed:
            subprocess.run(
                ["podman", *kind, "rm", "-f", "-t", "0", ident], capture_output=True, check=False
            )


@contextlib.contextmanager
def isolated_podman_container(name: str) -> Iterator[None]:
    """A container of Podman's own (not Berth's) on an ``isolate=true`` network of its own,
    both named ``name``, running inside the ``with`` and removed after.

    What other Podman users do beside Berth: Debian 12's netavark 1.4 inserts its
    isolation jump at the top of ``FORWARD`` when the container starts and deletes it
    when the last container of any isolated network goes."""
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    subprocess.run(
        ["podman", "network", "create", "--opt", "isolate=true", name],
        capture_output=True,
        check=True,
    )
    try:
        done = subprocess.run(
            ["podman", "run", "-d", "--name", name, "--network", name, TEST_IMAGE, "sleep", "300"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        yield
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)
        subprocess.run(["podman", "network", "rm", "-f", name], capture_output=True, check=False)
