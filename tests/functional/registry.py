"""A real OCI registry (Debian's ``docker-registry``) on a free loopback port, for pull tests.

Docker treats registries on 127.0.0.1 as insecure-allowed, so plain HTTP works.
``local_registry(auth=(user, password))`` guards it with htpasswd (bcrypt);
``image_store()`` runs one exactly as ``scripts/up`` runs Berth's image store.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from berth.images.store_setup import StoreFiles, htpasswd_line, prepare_store
from tests.live import free_port

__all__ = ["image_store", "local_registry"]

_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


@contextlib.contextmanager
def local_registry(auth: tuple[str, str] | None = None, bind: str = "127.0.0.1") -> Iterator[str]:
    """Run a registry; yield its ``host:port``; stop it and delete its storage afterwards.

    ``bind="0.0.0.0"`` also serves containers on the bridge (DinD cluster nodes);
    the yielded address stays the loopback one the host's engine may push to.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="berth-registry-") as tmp:
        config = Path(tmp) / "config.yml"
        guard = ""
        if auth is not None:
            (Path(tmp) / "htpasswd").write_text(htpasswd_line(*auth))
            guard = f"auth: {{htpasswd: {{realm: test, path: {tmp}/htpasswd}}}}\n"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {tmp}/data}}}}\n"
            f"http: {{addr: {bind}:{port}}}\n" + guard
        )
        with _serving(config, port, Path(tmp) / "registry.log"):
            yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def image_store() -> Iterator[StoreFiles]:
    """Berth's image store as ``scripts/up`` runs it (htpasswd auth, deletes enabled)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="berth-store-") as tmp:
        files = prepare_store(Path(tmp), port)
        with _serving(files.config, port, Path(tmp) / "registry.log"):
            yield files


@contextlib.contextmanager
def _serving(config: Path, port: int, log_path: Path) -> Iterator[None]:
    if not Path(_BINARY).exists():
        pytest.fail("docker-registry is missing: scripts/test installs Debian's docker-registry")
    log = log_path.open("wb")
    proc = subprocess.Popen([_BINARY, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                # 401: up, and guarded by htpasswd.
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code in (200, 401):
                    break
            time.sleep(0.1)
        else:
            raise AssertionError(f"docker-registry did not start: {log_path.read_text()}")
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
