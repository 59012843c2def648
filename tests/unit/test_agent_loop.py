"""The agent end to end in memory: Agent + FakeDriver + an in-memory control plane."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from berth import errors
from berth.agent import firewall as agent_firewall
from berth.agent.apply import apply_plan
from berth.agent.client import ControlClient
from berth.agent.diff import Create, EnsureImage, Remove, Start
from berth.agent.fake_control import FakeControlPlane, now_iso
from berth.agent.loop import Agent
from berth.config import Settings
from berth.domain.hostsync import DesiredContainer, NetworkRef, PendingOp
from berth.runtimes.fake import FakeDriver

PASSWORD = "agent-secret"
IMAGE = "busybox:1"


@dataclass
class Rig:
    control: FakeControlPlane
    runtime: FakeDriver
    settings: Settings


@pytest.fixture
def rig() -> Rig:
    settings = Settings(
        agent_host="host-1",
        reconcile_interval=0.2,
        heartbeat_interval=0.1,
        agent_password=PASSWORD,
    )
    return Rig(FakeControlPlane(PASSWORD), FakeDriver(images={IMAGE}), settings)


@contextlib.asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[asyncio.Task[None]]:
    """An Agent task over the rig; cancelled (like a killed agent) on exit."""
    async with rig.control.client() as http:
        agent = Agent(rig.settings, ControlClient(http, PASSWORD), rig.runtime)
        task = asyncio.create_task(agent.run())
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# The periodic pass of a test that counts passes: the long poll times out this soon.
QUICK_PASSES = 0.02


def quick_passes(rig: Rig) -> None:
    """Make periodic passes come every QUICK_PASSES seconds (call before ``running``)."""
    rig.settings = rig.settings.model_copy(update={"reconcile_interval": QUICK_PASSES})


async def passes(rig: Rig, n: int) -> None:
    """Return once ``n`` more full passes (each lists the engine) have run, however slow."""
    listed = rig.runtime.count("list_managed")
    await rig.runtime.wait_for(lambda: rig.runtime.count("list_managed") >= listed + n)


def container(uuid: str = "c1", state: str = "running", **kw: Any) -> DesiredContainer:
    base = DesiredContainer(
        uuid=uuid,
        name=f"name-{uuid}",
        project_id="p1",
        image=IMAGE,
        desired_state=state,  # type: ignore[arg-type]
        spec_version=1,
        desired_since=now_iso(),
    )
    return replace(base, **kw)


async def test_registers_and_heartbeats_only_when_its_other_calls_stop(rig: Rig) -> None:
    """Every call the control plane answers says the agent is alive: while its polls come
    back it sends no heartbeat of its own; while the control plane holds a poll, it does."""
    rig.settings = rig.settings.model_copy(
        update={"heartbeat_interval": 0.5, "reconcile_interval": 0.3}
    )
    beats = lambda: rig.control.heartbeats.get("host-1", 0)  # noqa: E731
    async with running(rig):
        # Polls that each wait 0.3 s (the full-state protocol's), each followed by a
        # pass: 10 of them take three seconds at least, six heartbeat intervals. The
        # poll in flight counts from its start: when one is answered, the last
        # answered one began up to 0.6 s before. (One beat is allowed: a loaded
        # machine may stall the agent's loop for a fraction of a second.)
        await passes(rig, 10)
        assert beats() <= 1
        rig.control.hold_polls = asyncio.Event()
        held = beats()
        await rig.control.wait_for(lambda: beats() >= held + 2)
        rig.control.hold_polls.set()
    report = rig.control.hosts["host-1"]
    assert (report.cpus, report.runtimes) == (4, ["runc"])
    assert report.agent_url == rig.settings.effective_agent_url


async def test_create_is_reported_running(rig: Rig) -> None:
    async with running(rig):
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    obs = rig.control.latest["c1"]
    assert obs.runtime_id == rig.runtime.containers["c1"].runtime_id
    assert obs.error is None and obs.started_at is not None
    assert rig.control.containers["c1"].runtime_id == obs.runtime_id


async def test_killed_agent_converges_to_exactly_one_container(rig: Rig) -> None:
    rig.runtime.gates["start"] = asyncio.Event()  # the first agent dies between create and start
    await rig.control.put(container())
    async with running(rig):
        await rig.runtime.wait_for(lambda: rig.runtime.count("start") == 1)
    assert rig.runtime.snapshot() == {"c1": "created"}

    rig.runtime.gates.clear()
    async with running(rig):
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    assert rig.runtime.snapshot() == {"c1": "running"}


async def test_deleted_is_removed_and_reported(rig: Rig) -> None:
    async with running(rig):
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        await rig.control.change("c1", desired_state="deleted")
        await rig.control.wait_for(lambda: "c1" not in rig.control.containers)
    assert rig.runtime.containers == {}
    assert rig.control.latest["c1"].removed


async def test_exited_container_is_reported_not_restarted(rig: Rig) -> None:
    quick_passes(rig)
    async with running(rig):
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        rig.runtime.exit("c1", 3)
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "stopped")
        await passes(rig, 4)  # several periodic passes
        assert rig.runtime.count("start", "c1") == 1
        assert rig.control.latest["c1"].exit_code == 3

        await rig.control.change("c1", desired_state="running")  # the user starts it again
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    assert rig.runtime.count("start", "c1") == 2


async def test_a_new_request_starts_even_with_a_clock_behind(rig: Rig) -> None:
    async with running(rig):
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        # The control plane's clock lags the host's: its request times predate the start.
        await rig.control.change("c1", desired_state="stopped", desired_since="2000-01-01T00:00:01")
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "stopped")
        await rig.control.change("c1", desired_state="running", desired_since="2000-01-01T00:00:02")
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    assert rig.runtime.count("start", "c1") == 2


async def test_new_agent_does_not_restart_an_exited_container(rig: Rig) -> None:
    quick_passes(rig)
    async with running(rig):
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    rig.runtime.exit("c1", 0)
    async with running(rig):  # no memory: only the start time tells
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "stopped")
        await passes(rig, 3)
    assert rig.runtime.count("start", "c1") == 1


async def test_garbage_is_removed_after_the_first_fetch(rig: Rig) -> None:
    await rig.runtime.create(container("orphan"))
    async with running(rig):
        await rig.runtime.wait_for(lambda: not rig.runtime.containers)
    assert "orphan" not in rig.control.latest  # nothing to tell about unknown containers


async def test_stop_pause_and_resume(rig: Rig) -> None:
    async with running(rig):
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        for state in ("paused", "running", "stopped", "running"):
            await rig.control.change("c1", desired_state=state)
            await rig.control.wait_for(lambda s=state: rig.control.state_of("c1") == s)  # type: ignore[misc]


async def test_reboot_runs_once_and_is_acknowledged(rig: Rig) -> None:
    quick_passes(rig)
    async with running(rig):
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        await rig.control.change("c1", pending_ops=[PendingOp("r1", "reboot")])
        await rig.control.wait_for(lambda: not rig.control.containers["c1"].pending_ops)
        await passes(rig, 3)
    assert rig.runtime.count("restart", "c1") == 1
    assert "r1" in rig.control.latest["c1"].done_ops or any(
        "r1" in obs.done_ops for obs in rig.control.observations
    )


async def test_kill_stops_and_stays_stopped(rig: Rig) -> None:
    quick_passes(rig)
    async with running(rig):
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        kill = PendingOp("k1", "kill", {"signal": "SIGKILL"})
        await rig.control.change("c1", pending_ops=[kill])
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "stopped")
        await passes(rig, 3)
    assert rig.runtime.snapshot() == {"c1": "stopped"}
    assert rig.runtime.count("kill", "c1") == 1


async def test_spec_change_updates_live(rig: Rig) -> None:
    async with running(rig):
        await rig.control.put(container(cpu=1.0, memory=128))
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        await rig.control.change("c1", spec_version=2, cpu=0.5, memory=64)
        await rig.control.wait_for(lambda: rig.control.containers["c1"].applied_spec_version == 2)
    assert (rig.runtime.containers["c1"].cpu, rig.runtime.containers["c1"].memory) == (0.5, 64)
    assert rig.runtime.count("update", "c1") == 1


async def test_vanished_container_is_reported_absent_or_healed(rig: Rig) -> None:
    async with running(rig):
        await rig.control.put(container("plain"))
        await rig.control.put(container("healed", auto_heal=True))
        await rig.control.wait_for(
            lambda: all(rig.control.state_of(u) == "running" for u in ("plain", "healed"))
        )
        first = rig.runtime.containers["healed"].runtime_id
        rig.runtime.vanish("plain")
        rig.runtime.vanish("healed")
        await rig.control.wait_for(lambda: rig.control.state_of("plain") == "absent")
        await rig.control.wait_for(
            lambda: (
                rig.control.state_of("healed") == "running"
                and rig.control.latest["healed"].runtime_id != first
            )
        )
    assert "plain" not in rig.runtime.containers


async def test_missing_image_is_a_clear_error_not_a_retry_storm(rig: Rig) -> None:
    quick_passes(rig)
    async with running(rig):
        await rig.control.put(container(image="nope:1"))
        await rig.control.wait_for(lambda: rig.control.latest.get("c1") is not None)
        await passes(rig, 3)
    obs = rig.control.latest["c1"]
    assert obs.state == "absent"
    assert obs.error is not None and "image 'nope:1' not found" in obs.error
    assert rig.runtime.count("ensure_image", "nope:1") == 1


async def test_held_container_is_left_alone(rig: Rig) -> None:
    quick_passes(rig)
    async with running(rig):
        await rig.control.put(container(held=True))
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "absent")
        await passes(rig, 3)
        assert {method for method, _ in rig.runtime.calls} <= {"host_facts", "list_managed"}
        await rig.control.change("c1", held=False, desired_state="running")  # the user asks again
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")


async def test_slow_pull_does_not_hold_up_other_containers(rig: Rig) -> None:
    rig.runtime.pullable.add("big:1")
    rig.runtime.gates["ensure_image:big:1"] = asyncio.Event()
    async with running(rig):
        await rig.control.put(container("slow", image="big:1"))
        await rig.runtime.wait_for(lambda: rig.runtime.count("ensure_image", "big:1") == 1)
        await rig.control.put(container("fast"))
        await rig.control.wait_for(lambda: rig.control.state_of("fast") == "running")
        assert "slow" not in rig.runtime.containers
        rig.runtime.gates["ensure_image:big:1"].set()
        await rig.control.wait_for(lambda: rig.control.state_of("slow") == "running")
    # The first create found no image (so the pull ran); the second made it.
    assert rig.runtime.count("create", "slow") == 2
    assert rig.runtime.count("start", "slow") == 1


async def test_expired_token_is_renewed(rig: Rig) -> None:
    async with running(rig):
        await rig.control.wait_for(lambda: rig.control.heartbeats.get("host-1", 0) >= 1)
        rig.control.expire_tokens()
        await rig.control.put(container())
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    assert rig.control.auth_count >= 2


async def test_reports_are_batched(rig: Rig) -> None:
    async with running(rig):
        for n in range(20):
            await rig.control.put(container(f"c{n}"))
        await rig.control.wait_for(
            lambda: all(rig.control.state_of(f"c{n}") == "running" for n in range(20))
        )
    assert rig.control.reports < len(rig.control.observations)


async def test_apply_plan_turns_failures_into_an_error() -> None:
    runtime = FakeDriver(images=set())
    desired = container(image="ghost:2")
    obs = await apply_plan(
        runtime, "c1", [EnsureImage("ghost:2", None), Create(desired), Start()], desired
    )
    assert obs.state == "absent"
    assert obs.error is not None
    assert obs.error.startswith("image 'ghost:2' not found: check the name or the registry")
    assert runtime.count("create") == 1  # it found no image; then the pull failed
    assert runtime.count("start") == 0 and not runtime.containers


async def test_ifnotpresent_creates_without_looking_at_the_image_first() -> None:
    runtime = FakeDriver(images={"here:1"})
    desired = container(image="here:1")
    plan = [EnsureImage("here:1", None), Create(desired), Start()]
    obs = await apply_plan(runtime, "c1", plan, desired)
    assert obs.state == "running" and obs.error is None
    assert runtime.count("ensure_image") == 0 and runtime.count("create") == 1


async def test_always_pulls_before_the_create_and_a_rebuild_pulls_before_removing() -> None:
    runtime = FakeDriver(images={"here:1"})
    runtime.pullable.add("here:1")
    desired = container(image="here:1", image_pull_policy="always")
    await apply_plan(runtime, "c1", [EnsureImage("here:1", "always"), Create(desired)], desired)
    assert [m for m, _ in runtime.calls][:2] == ["ensure_image", "create"]
    runtime.calls.clear()
    new = container(image="gone:2")  # a rebuild onto an image that cannot be had
    obs = await apply_plan(
        runtime, "c1", [EnsureImage("gone:2", None), Remove(), Create(new), Start()], new
    )
    assert obs.error is not None and "gone:2" in obs.error
    assert runtime.count("remove") == 0 and "c1" in runtime.containers  # the old one stays


class _Outage(httpx.AsyncBaseTransport):
    """The control plane's transport; while ``down``, connections are refused."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.down = inner, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return await self.inner.handle_async_request(request)


class _FakeClock:
    """The back-offs' clock: records each wait and lets it pass at once (in real time)."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._ticked = asyncio.Condition()

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        async with self._ticked:
            self._ticked.notify_all()
        await asyncio.sleep(0.001)  # a turn for the rest of the loop, not a busy spin

    async def until(self, seconds: float) -> None:
        """Return once the waits add up to ``seconds`` of the agent's time."""
        async with asyncio.timeout(10), self._ticked:
            await self._ticked.wait_for(lambda: sum(self.waits) >= seconds)


async def test_resumes_within_a_second_once_the_control_plane_is_back(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A control plane restarting for a few seconds used to leave the agent asleep in
    # a back-off that doubled towards 30 s: containers created meanwhile waited.
    monkeypatch.setattr(random, "uniform", lambda a, b: 1.0)  # no jitter: exact timings
    rig.settings.heartbeat_interval = 30.0  # nothing else wakes the agent up
    outage = _Outage(httpx.ASGITransport(app=rig.control.app))
    clock = _FakeClock()
    async with httpx.AsyncClient(transport=outage, base_url="http://control.test") as http:
        control = ControlClient(http, PASSWORD)
        agent = Agent(rig.settings, control, rig.runtime, backoff_sleep=clock.sleep)
        task = asyncio.create_task(agent.run())
        try:
            await rig.control.put(container("before"))
            await rig.control.wait_for(lambda: rig.control.state_of("before") == "running")
            outage.down = True
            clock.waits.clear()
            # Four seconds of outage on the agent's clock: tries at 0.2, 0.6, 1.4, 3.0
            # and then 6.2 s, before (the waits double from 0.2 s without a cap).
            await clock.until(4.0)
            outage.down = False
            await rig.control.put(container("after"))
            await rig.control.wait_for(lambda: rig.control.state_of("after") == "running", 1.5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # Once back, the control plane is tried again within a second.
    assert clock.waits and max(clock.waits) <= 1.0, clock.waits


async def test_a_request_that_arrives_while_its_container_is_busy_is_acted_on(rig: Rig) -> None:
    quick_passes(rig)
    rig.runtime.gates["start:c1"] = asyncio.Event()
    async with running(rig):
        await rig.control.put(container("c1"))
        await rig.runtime.wait_for(lambda: rig.runtime.count("start", "c1") == 1)
        await rig.control.change("c1", desired_state="stopped")  # while it is starting
        await passes(rig, 2)  # passes come and go
        rig.runtime.gates["start:c1"].set()
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "stopped")
    assert rig.runtime.snapshot() == {"c1": "stopped"}


async def test_other_containers_news_does_not_make_a_busy_worker_look_again(rig: Rig) -> None:
    rig.runtime.gates["start:c1"] = asyncio.Event()
    async with running(rig):
        await rig.control.put(container("c1"))
        await rig.runtime.wait_for(lambda: rig.runtime.count("start", "c1") == 1)
        for n in range(2, 7):  # each one wakes a pass while c1's worker waits on its start
            await rig.control.put(container(f"c{n}"))
            await rig.control.wait_for(lambda n=n: rig.control.state_of(f"c{n}") == "running")
        rig.runtime.gates["start:c1"].set()
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    # The inspect that follows its start, and none for each of the five passes.
    assert rig.runtime.count("inspect", "c1") == 1


async def test_a_burst_of_new_containers_needs_no_listing_per_pass(rig: Rig) -> None:
    rig.settings = rig.settings.model_copy(update={"reconcile_interval": 30.0})
    rig.runtime.gates["create"] = asyncio.Event()  # nothing gets reported meanwhile
    async with running(rig):
        await rig.runtime.wait_for(lambda: rig.runtime.count("list_managed") == 1)
        for n in range(1, 6):  # each commit wakes a pass that only adds one container
            await rig.control.put(container(f"c{n}"))
            await rig.runtime.wait_for(lambda n=n: rig.runtime.count("create") == n)
        assert rig.runtime.count("list_managed") == 1
        rig.runtime.gates["create"].set()
        for n in range(1, 6):
            await rig.control.wait_for(lambda n=n: rig.control.state_of(f"c{n}") == "running")
    assert rig.runtime.snapshot() == {f"c{n}": "running" for n in range(1, 6)}


async def test_a_change_to_a_container_it_has_lists_the_engine_afresh(rig: Rig) -> None:
    rig.settings = rig.settings.model_copy(update={"reconcile_interval": 30.0})
    async with running(rig):
        await rig.control.put(container("c1"))
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        listed = rig.runtime.count("list_managed")
        rig.runtime.exit("c1", 0)  # the engine's news, which only a listing tells
        await rig.control.put(container("c2"))  # not only an addition: c1's report changed it
        await rig.control.change("c1", desired_state="stopped")
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "stopped")
        await rig.control.wait_for(lambda: rig.control.state_of("c2") == "running")
    assert rig.runtime.count("list_managed") > listed
    assert rig.runtime.snapshot() == {"c1": "stopped", "c2": "running"}


async def test_a_create_after_a_confirmed_delete_needs_no_listing(rig: Rig) -> None:
    # The control plane drops a deleted container's row on the removal report
    # without waking the agent: the next create's pass is the first to see it
    # gone. The agent removed it itself, so that pass, too, only adds: no engine
    # listing on the way to the new container's start (#19).
    rig.settings = rig.settings.model_copy(update={"reconcile_interval": 30.0})
    async with running(rig):
        await rig.control.put(container("c1"))
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        await rig.control.change("c1", desired_state="deleted")
        await rig.control.wait_for(lambda: "c1" not in rig.control.containers)
        listed = rig.runtime.count("list_managed")
        await rig.control.put(container("c2"))
        await rig.control.wait_for(lambda: rig.control.state_of("c2") == "running")
        assert rig.runtime.count("list_managed") == listed
    assert rig.runtime.snapshot() == {"c2": "running"}


async def test_a_container_gone_from_the_engine_behind_its_back_is_still_listed(rig: Rig) -> None:
    # Only the agent's own confirmed removals are skipped: a container that left
    # the desired state while the agent had not removed it needs a fresh look.
    rig.settings = rig.settings.model_copy(update={"reconcile_interval": 30.0})
    async with running(rig):
        await rig.control.put(container("c1"))
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
        listed = rig.runtime.count("list_managed")
        rig.control.containers.pop("c1")  # dropped (say, by an admin) without a delete
        await rig.control.put(container("c2"))
        await rig.control.wait_for(lambda: rig.control.state_of("c2") == "running")
        await rig.runtime.wait_for(lambda: "c1" not in rig.runtime.containers)
    assert rig.runtime.count("list_managed") > listed
    assert rig.runtime.snapshot() == {"c2": "running"}


class _ChainRecorder:
    """A network driver that records, for each chain written, what the engine had then."""

    def __init__(self, runtime: FakeDriver) -> None:
        self.runtime = runtime
        self.seen: list[tuple[str, str | None]] = []  # (uuid, engine state at the write)

    async def write_firewalls(self, changes: dict[str, object]) -> None:
        for uuid, spec in changes.items():
            if spec is not None:
                self.seen.append((uuid, self.runtime.snapshot().get(uuid)))

    async def firewalled(self) -> set[str]:
        return set()

    async def prune(self, keep: set[str]) -> list[str]:
        return []

    async def program(self, remote: object) -> None:
        return None


class _OverlayFake(FakeDriver):
    """FakeDriver whose containers get the addresses their desired state leased."""

    def _view(self, record: Any, detailed: bool) -> Any:
        view = super()._view(record, detailed)
        if record.state == "running":
            view.addresses = {
                r.id: [{"addr": r.address, "version": 4}] for r in record.spec.networks
            }
        return view


@pytest.mark.parametrize("overlay", [True, False])
async def test_on_the_overlay_a_container_is_filtered_before_the_engine_starts_it(
    rig: Rig, overlay: bool
) -> None:
    """The overlay leases the address in advance: the chain goes in before the start, so
    the container never runs unfiltered. With the bridge driver (no lease) it can only
    follow the start, still before the report."""
    runtime = _OverlayFake(images={IMAGE})
    runtime.networks = _ChainRecorder(runtime)  # type: ignore[attr-defined]
    rig.runtime = runtime
    net = NetworkRef(id="n1", name="net", project_id="p1",
                     address="10.9.0.5" if overlay else None)  # fmt: skip
    async with running(rig):
        await rig.control.put(container(networks=[net], security_groups=["sg"], ingress=[]))
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    seen = runtime.networks.seen  # type: ignore[attr-defined]
    if overlay:
        # Written before the engine created it (the plan's create and start run together).
        assert seen and seen[0] == ("c1", None), seen
        assert len(seen) == 1  # the start gave it the leased address: nothing to rewrite
    else:
        assert all(state == "running" for _, state in seen), seen


class _BridgeFake(FakeDriver):
    """FakeDriver whose engine picks a running container's address at its start."""

    def _view(self, record: Any, detailed: bool) -> Any:
        view = super()._view(record, detailed)
        if record.state == "running":
            view.addresses = {
                r.id: [{"addr": "10.9.0.7", "version": 4}] for r in record.spec.networks
            }
        return view


class _RefusedChains(_ChainRecorder):
    """A network driver whose chain writes fail (the host's iptables refusing) until mended."""

    def __init__(self, runtime: FakeDriver) -> None:
        super().__init__(runtime)
        self.refusing = True

    async def write_firewalls(self, changes: dict[str, object]) -> None:
        if self.refusing and any(spec is not None for spec in changes.values()):
            raise errors.BerthError("iptables-restore: line 3 failed")
        await super().write_firewalls(changes)

    async def connect(self, uuid: str, net: NetworkRef) -> None:
        return None  # the fake engine keeps no attachments of a stopped container


@pytest.mark.parametrize("overlay", [True, False])
async def test_a_container_whose_chain_cannot_be_written_does_not_run_unfiltered(
    rig: Rig, overlay: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: security groups that cannot be applied leave the container stopped
    (bridge: the chain follows the start, so it is stopped again) or never started
    (overlay: the chain comes first), reported in error with what to do; iptables'
    own words stay in the agent's log. Once the host takes chains, a start runs it,
    filtered."""
    monkeypatch.setattr(agent_firewall, "_SETTLE_PAUSE", 0.001)
    runtime = _OverlayFake(images={IMAGE}) if overlay else _BridgeFake(images={IMAGE})
    chains = _RefusedChains(runtime)
    runtime.networks = chains  # type: ignore[attr-defined]
    rig.runtime = runtime
    net = NetworkRef(id="n1", name="net", project_id="p1",
                     address="10.9.0.5" if overlay else None)  # fmt: skip
    async with running(rig):
        await rig.control.put(container(networks=[net], security_groups=["sg"], ingress=[]))
        await rig.control.wait_for(lambda: _error_of(rig, "c1") is not None)
        error = _error_of(rig, "c1")
        assert error is not None and "security groups could not be applied" in error
        assert "Start it again" in error and "iptables-restore" not in error
        assert runtime.snapshot().get("c1") != "running"
        assert rig.control.state_of("c1") != "running"
        if overlay:
            assert runtime.count("start", "c1") == 0  # never ran, not even for a moment
        else:
            assert runtime.count("stop", "c1") == 1
        chains.refusing = False
        await rig.control.change("c1", desired_state="running")  # the user's start
        await rig.control.wait_for(lambda: rig.control.state_of("c1") == "running")
    assert chains.seen and chains.seen[-1][0] == "c1"
    assert runtime.snapshot()["c1"] == "running"


def _error_of(rig: Rig, uuid: str) -> str | None:
    obs = rig.control.latest.get(uuid)
    return obs.error if obs else None
