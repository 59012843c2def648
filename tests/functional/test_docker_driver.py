"""DockerDriver against the real engine: every spec field, every verb.

Each test works on its own ``berth-<uuid>`` container (owner label unique to
the test) and removes it, whatever happens.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from socket import socketpair as _socketpair
from typing import Any

import pytest

from berth import errors
from berth.runtimes import docker
from berth.runtimes.base import RuntimeDriver, exec_process_gone
from tests.functional.boxes import Box, owned_box
from tests.functional.docker_engine import docker_driver

pytestmark = pytest.mark.docker

MIB = 1024 * 1024


@pytest.fixture
async def box(api: Any) -> AsyncIterator[Box]:
    async with owned_box(api, Box) as made:
        yield made


async def test_driver_honours_the_protocol(box: Box) -> None:
    assert isinstance(box.driver, RuntimeDriver)


async def test_host_facts(box: Box) -> None:
    facts = await box.driver.host_facts()
    assert facts.cpus >= 1 and facts.mem_total > 0 and facts.disk_total > 0
    assert "runc" in facts.runtimes
    assert not any(r.startswith("io.containerd") for r in facts.runtimes)
    assert facts.os_type == "linux" and facts.kernel_version
    assert facts.engine == "docker"
    assert facts.engine_version == box.api.version()["Version"]


async def test_create_applies_the_whole_spec(box: Box) -> None:
    spec = box.spec(
        entrypoint=["/bin/sh", "-c"],
        command=["echo hi; sleep 300"],
        cpu=0.5,
        cpuset=[0],
        memory=64,
        workdir="/tmp",
        environment={"GREETING": "hello"},
        labels={"tier": "web"},
        hostname="webhost",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": "3"},
        healthcheck={"test": "true", "interval": 5, "retries": 2, "timeout": 3},
        interactive=True,
        tty=True,
        spec_version=7,
    )
    runtime_id = await box.driver.create(spec)
    data = box.inspect()
    host, config = data["HostConfig"], data["Config"]
    assert data["Id"] == runtime_id and data["Name"] == f"/berth-{box.uuid}"
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 * MIB
    assert host["CpusetCpus"] == "0"
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Privileged"] is False and host["AutoRemove"] is False
    assert "GREETING=hello" in config["Env"]
    assert (config["WorkingDir"], config["Hostname"]) == ("/tmp", "webhost")
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["echo hi; sleep 300"]
    assert (config["Tty"], config["OpenStdin"]) == (True, True)
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 5_000_000_000,
        "Timeout": 3_000_000_000,
        "Retries": 2,
    }
    labels = config["Labels"]
    assert labels["tier"] == "web" and labels["berth.uuid"] == box.uuid
    assert (labels["berth.project"], labels["berth.spec_version"]) == ("proj-1", "7")
    observed = await box.driver.inspect(box.uuid)
    assert observed is not None
    assert (observed.state, observed.status_detail, observed.spec_version) == (
        "created",
        "Created",
        7,
    )
    assert observed.started_at is None


async def test_create_is_idempotent(box: Box) -> None:
    first = await box.driver.create(box.spec())
    again = await box.driver.create(box.spec(command=["sleep", "1"]))
    assert again == first
    managed = [c for c in await box.driver.list_managed() if c.uuid == box.uuid]
    assert [c.runtime_id for c in managed] == [first]


async def test_concurrent_creates_make_one_container(box: Box) -> None:
    ids = await asyncio.gather(*(box.driver.create(box.spec()) for _ in range(4)))
    assert len(set(ids)) == 1
    assert len(box.api.containers(all=True, filters={"name": f"berth-{box.uuid}"})) == 1


async def test_list_managed_sees_only_its_owner(box: Box) -> None:
    await box.driver.create(box.spec())
    stranger = docker_driver(f"someone-else-{box.uuid}")
    try:
        assert box.uuid not in {c.uuid for c in await stranger.list_managed()}
    finally:
        await stranger.close()
    (listed,) = [c for c in await box.driver.list_managed() if c.uuid == box.uuid]
    assert (listed.state, listed.detailed) == ("created", False)


async def test_lifecycle(box: Box) -> None:
    d, u = box.driver, box.uuid
    await d.create(box.spec())
    await d.start(u)
    await d.start(u)  # already running: fine
    running = await d.inspect(u)
    assert running is not None and running.state == "running"
    assert running.started_at is not None and running.status_detail.startswith("Up ")

    await d.pause(u)
    paused = await d.inspect(u)
    assert paused is not None and paused.state == "paused"
    assert paused.status_detail.endswith("(Paused)")
    with pytest.raises(errors.InvalidStateException):
        await d.pause(u)
    await d.unpause(u)
    assert box.inspect()["State"]["Status"] == "running"

    await d.stop(u, 1)
    stopped = await d.inspect(u)
    assert stopped is not None and stopped.state == "stopped" and stopped.exit_code == 137
    assert stopped.status_detail.startswith("Exited (137)")

    await d.restart(u, 1)
    assert box.inspect()["State"]["Status"] == "running"

    await d.kill(u, "SIGKILL")
    await _until(lambda: box.inspect()["State"]["Status"] == "exited")
    assert box.inspect()["State"]["ExitCode"] == 137

    await d.remove(u)
    assert await d.inspect(u) is None
    await d.remove(u)  # absent is success


async def test_missing_container_errors(box: Box) -> None:
    with pytest.raises(errors.ContainerNotFound):
        await box.driver.start(box.uuid)
    with pytest.raises(errors.ContainerNotFound):
        await box.driver.logs(box.uuid)
    assert await box.driver.inspect(box.uuid) is None


async def test_update_changes_limits_live(box: Box) -> None:
    await box.driver.create(box.spec(cpu=0.5, memory=64))
    await box.driver.start(box.uuid)
    await box.driver.update(box.uuid, 1.0, 128)
    host = box.inspect()["HostConfig"]
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Memory"] == host["MemorySwap"] == 128 * MIB


async def test_logs(box: Box) -> None:
    # stdout and stderr reach the log file through separate copiers: the pause keeps
    # their order fixed, which `tail` (counted before the stream filter) depends on.
    script = "echo err1 >&2; sleep 0.3; echo out1; echo out2; sleep 300"
    await box.driver.create(box.spec(command=["sh", "-c", script]))
    before = time.time() - 1
    await box.driver.start(box.uuid)
    d, u = box.driver, box.uuid
    await _until_async(lambda: d.logs(u), lambda text: "out2" in text)
    assert await d.logs(u, stderr=False) == "out1\nout2\n"
    assert await d.logs(u, stdout=False) == "err1\n"
    assert await d.logs(u, stderr=False, tail=1) == "out2\n"
    stamped = (await d.logs(u, stderr=False, timestamps=True)).splitlines()
    assert len(stamped) == 2 and stamped[0].split(" ", 1)[1] == "out1"
    assert stamped[0][:4].isdigit() and "T" in stamped[0].split(" ", 1)[0]
    assert "out1" in await d.logs(u, since=before)
    assert await d.logs(u, since=time.time() + 3600) == ""


async def test_execute(box: Box) -> None:
    await box.driver.create(box.spec())
    await box.driver.start(box.uuid)
    output, code = await box.driver.execute(
        box.uuid, ["sh", "-c", "echo a; sleep 0.2; echo b >&2; exit 4"], 5
    )
    assert (output, code) == ("a\nb\n", 4)
    started = time.monotonic()
    with pytest.raises(errors.Conflict, match="did not finish within 1 seconds"):
        await box.driver.execute(box.uuid, ["sleep", "30"], 1)
    assert time.monotonic() - started < 5


async def test_execute_output_is_bounded(box: Box, caplog: pytest.LogCaptureFixture) -> None:
    # Before: 100 MB of output took 2 GB of an all-in-one API process (a forever-writing
    # command, all it could write in execute_timeout).
    await box.driver.create(box.spec())
    await box.driver.start(box.uuid)
    limit = 64 * 1024
    with pytest.raises(errors.Invalid, match=f"more than {limit} bytes"):
        await box.driver.execute(box.uuid, ["yes"], 30, limit)
    # Refused, it is killed: left alone it blocked on its pipe for ever, and removing
    # the container then took the engine 20 s.
    top = await box.driver.top(box.uuid)
    assert not any(p[-1] == "yes" for p in top["Processes"]), top
    with pytest.raises(errors.Invalid, match="execute_max_output_bytes"):
        await box.driver.execute(box.uuid, ["head", "-c", str(limit + 1), "/dev/zero"], 30, limit)
    output, code = await box.driver.execute(
        box.uuid, ["head", "-c", str(limit), "/dev/zero"], 30, limit
    )
    assert len(output) == limit
    # Under load this engine now and then loses an exec's exit (_LostExits below): the
    # whole output still comes, with no code, and the driver says so (seen in CI).
    assert code == 0 or (code is None and "lost the exit" in caplog.text), (code, caplog.text)


class _LostExits:
    """The engine as Docker 20.10 on containerd 1.6 is under load now and then: an
    exec whose process has ended still ``Running``, its exit never reported."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.kept: list[socket.socket] = []

    def exec_start(self, exec_id: str, socket: bool) -> Any:
        """The real stream's bytes, on a connection that stays open after them."""
        real = self._api.exec_start(exec_id, socket=socket)
        ours, theirs = _socketpair()
        self.kept.append(theirs)
        while chunk := real.read(65536):
            theirs.sendall(chunk)
        real.close()
        return ours

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {**self._api.exec_inspect(exec_id), "Running": True, "ExitCode": None}


async def test_an_exec_whose_exit_the_engine_lost_answers_with_its_output(box: Box) -> None:
    # Before: its stream stayed open, so the request waited out its whole timeout and
    # answered 409 "did not finish" for a command that had written all it had (seen
    # in CI: `head -c 65537 /dev/zero` refused as too slow instead of too large).
    await box.driver.create(box.spec())
    await box.driver.start(box.uuid)
    exec_id = box.api.exec_create(box.inspect()["Id"], ["sh", "-c", "echo done"])["Id"]
    engine = _LostExits(box.api)
    started = time.monotonic()
    output, lost = await asyncio.to_thread(docker._exec_output, exec_id, 30, 1024, engine)
    assert (output, lost) == (b"done\n", True)
    assert time.monotonic() - started < 10
    for kept in engine.kept:
        kept.close()


async def test_a_running_exec_is_not_taken_for_gone(box: Box) -> None:
    await box.driver.create(box.spec())
    await box.driver.start(box.uuid)
    init_pid = int(box.inspect()["State"]["Pid"])
    exec_id = box.api.exec_create(box.inspect()["Id"], ["sleep", "60"])["Id"]
    box.api.exec_start(exec_id, detach=True)
    info = box.api.exec_inspect(exec_id)
    assert info["Running"] and not exec_process_gone(info, init_pid)
    # An agent that does not see the host's pids cannot tell: it says no.
    assert not exec_process_gone({**info, "Pid": 999_999_999}, 999_999_998)
    assert exec_process_gone({**info, "Pid": 999_999_999}, init_pid)


async def test_execute_in_a_stopped_container_is_a_state_error(box: Box) -> None:
    await box.driver.create(box.spec())
    with pytest.raises(errors.InvalidStateException):
        await box.driver.execute(box.uuid, ["true"], 5)


async def test_top(box: Box) -> None:
    await box.driver.create(box.spec())
    await box.driver.start(box.uuid)
    plain = await box.driver.top(box.uuid)
    assert "PID" in plain["Titles"]
    assert any("sleep 300" in " ".join(p) for p in plain["Processes"])
    custom = await box.driver.top(box.uuid, "-o pid,comm")
    assert custom["Titles"] == ["PID", "COMMAND"]
    # ps refusing its arguments was the engine's 500, a 503 "host unavailable" to users.
    for args in ("--bogus", "--version", "-o"):
        with pytest.raises(errors.Invalid, match="Invalid ps_args"):
            await box.driver.top(box.uuid, args)


async def test_stats(box: Box) -> None:
    await box.driver.create(box.spec(memory=64))
    await box.driver.start(box.uuid)
    stats = await box.driver.stats(box.uuid)
    assert stats["CONTAINER"] == f"berth-{box.uuid}"
    assert stats["MEM LIMIT(MiB)"] == 64.0
    assert 0 <= stats["MEM %"] <= 100 and stats["CPU %"] >= 0
    for key in ("BLOCK I/O(B)", "NET I/O(B)"):
        read, write = str(stats[key]).split("/")
        assert read.isdigit() and write.isdigit()


async def test_ensure_image_policies(box: Box) -> None:
    d = box.driver
    await d.ensure_image(box.image, "never")
    await d.ensure_image(box.image, "IfNotPresent")
    await d.ensure_image(box.image, None)  # present: no registry needed
    missing = f"berth-test/absent-{box.uuid}:1"
    with pytest.raises(errors.ImageNotFound, match="pull policy is 'never'"):
        await d.ensure_image(missing, "never")
    with pytest.raises(errors.ImageNotFound, match="check the name or the registry"):
        await d.ensure_image(missing, "ifnotpresent")
    with pytest.raises(ValueError, match="unknown image pull policy"):
        await d.ensure_image(box.image, "sometimes")


async def test_create_with_a_missing_image(box: Box) -> None:
    with pytest.raises(errors.ImageNotFound):
        await box.driver.create(box.spec(image=f"berth-test/absent-{box.uuid}:1"))


async def test_auto_remove(box: Box) -> None:
    await box.driver.create(box.spec(command=["true"], auto_remove=True))
    assert box.inspect()["HostConfig"]["AutoRemove"] is True
    await box.driver.start(box.uuid)
    await _until_async(lambda: box.driver.inspect(box.uuid), lambda seen: seen is None)
    await box.driver.remove(box.uuid)  # already gone (or going): still success


async def test_failed_start_leaves_a_created_container(box: Box) -> None:
    await box.driver.create(box.spec(command=["no-such-binary"]))
    with pytest.raises(errors.BerthError, match="no-such-binary"):
        await box.driver.start(box.uuid)
    seen = await box.driver.inspect(box.uuid)
    assert seen is not None and seen.state == "created" and seen.started_at is None


async def _until(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _until_async(fetch: Any, check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check(await fetch()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_network_removed_behind_the_drivers_back_is_made_again(box: Box) -> None:
    from berth.domain.hostsync import NetworkRef
    from berth.networks.base import network_name

    net = NetworkRef(f"n{box.uuid}", "default", "proj-1")
    first = await box.driver.create(box.spec(networks=[net]))
    await box.driver.remove(box.uuid)
    box.api.remove_network(network_name(net.id))  # the driver still believes it exists
    again = await box.driver.create(box.spec(networks=[net]))
    assert again != first
    attached = box.inspect()["NetworkSettings"]["Networks"]
    assert list(attached) == [network_name(net.id)]


def _iptables_rules(*about: str) -> str:
    """The filter table's rules that mention any of ``about`` (other tests run beside us)."""
    import subprocess

    listing = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    return "\n".join(line for line in listing.splitlines() if any(a in line for a in about))


async def test_firewalls_of_several_containers_change_in_one_atomic_write(box: Box) -> None:
    from berth.networks import FirewallRule, chain_name

    a, b = f"{box.uuid}-a", f"{box.uuid}-b"
    web = (FirewallRule("tcp", 80, 80, None),)
    networks = box.driver.networks
    mine = (chain_name(a), chain_name(b), "10.250.0.")
    await networks.write_firewalls({a: (("10.250.0.2",), web), b: (("10.250.0.3",), ())})
    rules = _iptables_rules(*mine)
    assert "-A BERTH-FORWARD -d 10.250.0.2/32" in rules and f"-j {chain_name(a)}" in rules
    assert f"-A {chain_name(a)} -p tcp -m tcp --dport 80 -j RETURN" in rules
    assert "-A BERTH-FORWARD -d 10.250.0.3/32" in rules and f"-A {chain_name(b)} -j DROP" in rules
    assert await networks.firewalled() == {a, b}

    # A bad rule fails the whole write: neither container's filtering changes.
    bad = (FirewallRule("no-such-protocol", None, None, None),)
    with pytest.raises(errors.BerthError, match="iptables-restore"):
        await networks.write_firewalls({a: None, b: (("10.250.0.3",), bad)})
    assert _iptables_rules(*mine) == rules

    # One write: a's filtering goes, b moves to a new address.
    await networks.write_firewalls({a: None, b: (("10.250.0.4",), web)})
    rules = _iptables_rules(*mine)
    assert chain_name(a) not in rules and "10.250.0.2" not in rules and "10.250.0.3" not in rules
    assert "-A BERTH-FORWARD -d 10.250.0.4/32" in rules
    assert f"-A {chain_name(b)} -p tcp -m tcp --dport 80 -j RETURN" in rules
    assert await networks.firewalled() == {b}
    await networks.write_firewalls({b: None})
    assert _iptables_rules(*mine) == ""


async def test_a_jump_an_older_berth_wrote_in_docker_user_moves_to_berths_chain(box: Box) -> None:
    """An upgraded agent finds its chains jumped to from DOCKER-USER: the first write moves
    the jump to BERTH-FORWARD, and a leftover there is swept like any other."""
    import subprocess

    from berth.networks import FirewallRule, chain_name

    a, b = f"{box.uuid}-a", f"{box.uuid}-b"
    web = (FirewallRule("tcp", 80, 80, None),)
    lines = []
    for uuid, address in ((a, "10.250.1.2/32"), (b, "10.250.1.3/32")):
        chain, comment = chain_name(uuid), f"berth test-{box.uuid} {uuid}"  # owned_box's owner
        lines += [f":{chain} - [0:0]", f"-A {chain} -j DROP"]
        lines.append(f'-I DOCKER-USER -d {address} -m comment --comment "{comment}" -j {chain}')
    body = "\n".join(["*filter", *lines, "COMMIT", ""])
    await asyncio.to_thread(
        subprocess.run, ["iptables-restore", "-w", "--noflush"], input=body.encode(), check=True
    )
    networks = box.driver.networks
    assert await networks.firewalled() == {a, b}  # found where the older Berth put them
    await networks.write_firewalls({a: (("10.250.1.2",), web), b: None})
    rules = _iptables_rules(chain_name(a), chain_name(b), "10.250.1.")
    assert "-A BERTH-FORWARD -d 10.250.1.2/32" in rules and "DOCKER-USER" not in rules
    assert chain_name(b) not in rules
    await networks.write_firewalls({a: None})
    assert _iptables_rules(chain_name(a), "10.250.1.") == ""
