"""A real OCI registry (Debian's ``docker-registry``) on a free loopback port, for pull tests.

Docker treats registries on 127.0.0.1 as insecure-allowed, so plain HTTP works.
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

from tests.live import free_port

__all__ = ["local_registry"]

_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


@contextlib.contextmanager
def local_registry() -> Iterator[str]:
    """Run a registry; yield its ``host:port``; stop it and delete its storage afterwards."""
    if not Path(_BINARY).exists():
        pytest.fail("docker-registry is missing: scripts/test installs Debian's docker-registry")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="berth-registry-") as tmp:
        config = Path(tmp) / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {tmp}/data}}}}\n"
            f"http: {{addr: 127.0.0.1:{port}}}\n"
        )
        log = (Path(tmp) / "registry.log").open("wb")
        proc = subprocess.Popen([_BINARY, "serve", str(config)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise AssertionError("docker-registry did not start")
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
