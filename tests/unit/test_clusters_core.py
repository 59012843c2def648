"""The pure parts of clusters: driver selection, the engine's endings, the per-cluster CA."""

from __future__ import annotations

import asyncio

import pytest
from cryptography import x509

from berth.clusters import (
    ClusterDriverNotSupported,
    ClusterSpec,
    DriverInfo,
    DriverRegistry,
    NodeProvisioner,
    Outcome,
    Report,
    pki,
    run_operation,
)


class Stub:
    def __init__(self, name: str, coe: str, os: str = "debian", error: Exception | None = None):
        self.info = DriverInfo(name, "vm", os, coe, "1")
        self.error = error

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        await report("step")
        if self.error:
            raise self.error
        return Outcome(api_address="tcp://x")

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        await asyncio.sleep(10)
        return Outcome()

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        return None


SPEC = ClusterSpec("u", "c", "p", 1, 1, 1.0, 512, "img")


def test_selection_follows_magnum() -> None:
    reg = DriverRegistry([Stub("b-swarm", "swarm-mode"), Stub("a-k8s", "kubernetes", "fedora")])
    assert reg.select(server_type="vm", os=None, coe="swarm-mode").info.name == "b-swarm"
    assert reg.select(server_type="vm", os="fedora", coe="kubernetes").info.name == "a-k8s"
    assert reg.select(server_type="bm", os=None, coe="x", name="a-k8s").info.name == "a-k8s"
    for kwargs in (
        {"server_type": "bm", "os": None, "coe": "swarm-mode"},
        {"server_type": "vm", "os": "debian", "coe": "kubernetes"},
        {"server_type": "vm", "os": None, "coe": "swarm-mode", "name": "nope"},
    ):
        with pytest.raises(ClusterDriverNotSupported):
            reg.select(**kwargs)  # type: ignore[arg-type]


async def test_engine_endings() -> None:
    steps: list[str] = []

    async def report(reason: str) -> None:
        steps.append(reason)

    ok = await run_operation("CREATE", Stub("s", "swarm-mode"), SPEC, None, report, timeout_s=5)  # type: ignore[arg-type]
    assert ok.status == "CREATE_COMPLETE" and ok.outcome == Outcome(api_address="tcp://x")
    assert steps == ["step"]
    bad = Stub("s", "swarm-mode", error=RuntimeError("disk full"))
    failed = await run_operation("CREATE", bad, SPEC, None, report, timeout_s=5)  # type: ignore[arg-type]
    assert failed.status == "CREATE_FAILED" and "disk full" in failed.reason
    slow = await run_operation("UPDATE", Stub("s", "x"), SPEC, None, report, timeout_s=0.05)  # type: ignore[arg-type]
    assert slow.status == "UPDATE_FAILED" and "timed out" in slow.reason
    gone = await run_operation("DELETE", Stub("s", "x"), SPEC, None, report, timeout_s=None)  # type: ignore[arg-type]
    assert gone.status == "DELETE_COMPLETE"


def test_ca_issues_server_and_client_certificates() -> None:
    ca = pki.new_ca("demo")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert_pem, key_pem = pki.issue(ca, "node-0", server=True, sans=("127.0.0.1", "node-0"))
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cert.verify_directly_issued_by(ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["node-0"]
    assert "PRIVATE KEY" in key_pem
    with pytest.raises(pki.InvalidCsr):
        pki.sign_csr(ca, "-----BEGIN CERTIFICATE REQUEST-----\nnope\n")


def test_a_broken_driver_plugin_is_skipped_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from importlib.metadata import EntryPoint

    from berth import plugins
    from berth.clusters import registry

    good = EntryPoint("swarm-mode", "berth.clusters.swarm:driver", registry.ENTRY_POINT_GROUP)
    broken = EntryPoint("ghost", "berth.clusters.no_such_module:Driver", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [broken, good])
    loaded = registry.load_drivers()
    assert [d.info.name for d in loaded.drivers.values()] == ["swarm-mode"]
    assert "ghost" in caplog.text and "cannot be loaded" in caplog.text
