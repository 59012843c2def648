"""The agent: register, heartbeat, and reconcile the host with the control plane.

One pass: long-poll the desired state (it answers at once when something
changed), list the managed containers with one cheap call (skipped when the
change only adds containers the engine cannot have yet), and hand every
container that needs attention to its own worker task: plan, apply, report.
One worker per container UUID at a time, so two operations never race on one
container, and a slow image pull holds up nothing else. Observations go to a
reporter that sends whatever has queued in one batch, without waiting.

Every call the control plane answers tells it this agent is alive (an idle
agent's long poll starts every ``agent_poll_wait``), so a heartbeat of its own
is sent only after ``heartbeat_interval`` without one.

Nothing here is durable: a restarted agent finds its containers by label and
name, and the plans converge from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from berth import errors
from berth.agent.apply import apply_plan, drop_owned_volumes, observe
from berth.agent.client import ControlPlane, ControlPlaneError, Since
from berth.agent.diff import (
    Acknowledge,
    Action,
    History,
    Kill,
    Restart,
    Start,
    needs_detail,
    plan,
)
from berth.agent.firewall import ADDRESSED_STATES, FirewallSync
from berth.config import Settings
from berth.domain.hostsync import (
    DesiredContainer,
    DesiredHost,
    HostReport,
    InjectedFile,
    Observation,
)
from berth.networks.base import NetworkDriver
from berth.runtimes.base import HostFacts, RuntimeContainer, RuntimeDriver, engine_labels

__all__ = ["Agent", "Sleep"]

log = logging.getLogger(__name__)

_MAX_STEPS = 4  # plan/apply rounds per wake-up: ops first, then level changes
_RETRY_FIRST, _RETRY_MAX = 10.0, 300.0  # back-off of a failed plan, seconds
_UNREACHABLE_RETRY = 1.0  # seconds between tries while the control plane does not answer
_HEARTBEAT_RETRY = 5.0  # seconds before a failed heartbeat is tried again (at most)
# Incremental protocol: read everything again this often (s, jittered) even when
# the feed says nothing is missing; a belt to the feed's braces.
_RESYNC_EVERY = 600.0

Sleep = Callable[[float], Awaitable[None]]  # asyncio.sleep's shape

_HEALTH = re.compile(r"\((health: \w+|healthy|unhealthy)\)")


@dataclass(slots=True)
class _Memory:
    """What the agent remembers about one container between passes (in memory only)."""

    done_ops: set[str] = field(default_factory=set)
    started_for: str | None = None
    requested_since: str | None = None
    seen: bool = False  # whether last_since holds anything yet
    last_since: str | None = None
    error: str | None = None
    error_intent: tuple[Any, ...] | None = None
    failures: int = 0
    retry_at: float = 0.0
    reported: tuple[Any, ...] | None = None
    owns_volumes: bool = False  # it has volumes of its own (``--mount size=N``)
    removed: bool = False  # this agent removed it and queued the report saying so
    existed: bool = False  # this agent made it or saw it on the engine (``History.existed``)

    def history(self) -> History:
        return History(
            frozenset(self.done_ops), self.started_for, self.requested_since, self.existed
        )

    def note(self, desired: DesiredContainer, observed: RuntimeContainer | None) -> None:
        """Record the request time, telling a new request (seen arriving) from the first sight."""
        since = desired.desired_since
        if self.seen and self.last_since != since:
            if observed is not None and observed.state in ("running", "paused", "restarting"):
                self.started_for = since  # asked while it runs: nothing left to start
            else:
                self.requested_since = since
        self.seen, self.last_since = True, since
        if observed is not None:
            self.existed = True
        if any(v.owner == desired.uuid for v in desired.volumes):
            self.owns_volumes = True


def _intent(desired: DesiredContainer | None) -> tuple[Any, ...] | None:
    """What the user asked, as a value: a change of it resets errors and forces a report."""
    if desired is None:
        return None
    ops = tuple(op.id for op in desired.pending_ops)
    return (desired.desired_state, desired.desired_since, desired.spec_version, ops)


def _report_key(obs: Observation, desired: DesiredContainer | None) -> tuple[Any, ...]:
    # Not all of status_detail or started_at: "Up 3 minutes" turning into "Up 4
    # minutes" is not news, but "(healthy)" turning into "(unhealthy)" is.
    addresses = sorted((obs.addresses or {}).items(), key=lambda kv: kv[0])
    health = _HEALTH.search(obs.status_detail or "")
    return (
        obs.state, obs.exit_code, obs.runtime_id, obs.spec_version, repr(addresses),
        health.group(0) if health else None, obs.error, obs.removed, tuple(obs.done_ops),
        _intent(desired),
    )  # fmt: skip


# The error of a container whose security-group chain could not be written (the
# agent's log says why: iptables' own words stay off the tenant's status_reason).
UNFILTERED = (
    "Its security groups could not be applied on its host, so it was stopped rather than "
    "run unfiltered. Start it again; if this recurs, the operator should check the host's "
    "firewall (iptables) and the agent's log."
)


def _starts(actions: list[Action]) -> bool:
    return any(isinstance(a, Start | Restart) for a in actions)


def _networked(desired: DesiredContainer, supported: bool) -> DesiredContainer:
    """Without a network driver the host ignores networks and security groups."""
    if supported or not (desired.networks or desired.no_network or desired.ingress is not None):
        return desired
    return replace(desired, networks=[], no_network=False, ingress=None)


def _unreachable(exc: BaseException | None) -> bool:
    return isinstance(exc, ControlPlaneError) and exc.unreachable


class _Backoff:
    """Exponential back-off with jitter, for the slow paths only.

    After a failure that got no answer at all (``after`` is an unreachable
    ControlPlaneError: the control plane is down or restarting) the wait is at
    most ``_UNREACHABLE_RETRY``: a try costs one refused connection, and the
    agent must resume as soon as the control plane is back, not half a minute
    later. Error answers back off up to ``limit``.
    """

    def __init__(self, sleep: Sleep, first: float = 0.2, limit: float = 30.0) -> None:
        self.first, self.limit, self.delay = first, limit, first
        self._sleep = sleep

    async def sleep(self, after: BaseException | None = None) -> None:
        limit = min(self.limit, _UNREACHABLE_RETRY) if _unreachable(after) else self.limit
        self.delay = min(self.delay, limit)
        await self._sleep(self.delay * random.uniform(0.8, 1.2))
        self.delay = min(limit, self.delay * 2)

    def reset(self) -> None:
        self.delay = self.first


class Agent:
    """Makes the runtime match the control plane's desired state for this host."""

    def __init__(
        self,
        settings: Settings,
        control: ControlPlane,
        runtime: RuntimeDriver,
        *,
        backoff_sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._settings = settings
        # The clock the back-offs wait on: a test gives a fake one to replay a
        # long outage in no time and read back how long each wait would have been.
        self._backoff_sleep = backoff_sleep
        self._control = control
        self._runtime = runtime
        self.hostname = settings.agent_host
        self._desired: dict[str, DesiredContainer] = {}
        self._observed: dict[str, RuntimeContainer] = {}
        self._memory: dict[str, _Memory] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._listed_at = float("-inf")  # when list_managed last answered (monotonic)
        # Security groups and project networks, when the runtime has a network driver.
        networks: NetworkDriver | None = getattr(runtime, "networks", None)
        # The overlay's tunnel endpoint, registered so other hosts can reach this one.
        self._underlay_ip: str | None = getattr(networks, "local_ip", None)
        self._firewall = (
            FirewallSync(networks, idle=settings.network_idle_seconds)
            if networks is not None
            else None
        )
        self._outbox: asyncio.Queue[tuple[Observation, tuple[Any, ...]]] = asyncio.Queue()
        # The incremental protocol: the (epoch, revision) this view of the
        # desired state is at, () for none (ask for everything).
        self._since: Since = ()
        self._view: DesiredHost | None = None
        self._resync_at = 0.0
        self._passed_at = float("-inf")  # when the last pass began (monotonic)
        self._pass_lock = asyncio.Lock()
        self._tasks: asyncio.TaskGroup | None = None
        self._registered: HostReport | None = None  # what the control plane last accepted
        # When the latest call the control plane answered began, and the calls in
        # flight (monotonic): every call says this agent is alive, so a heartbeat
        # is due only after a silence (``_heartbeat_loop``).
        self._heard_at = float("-inf")
        self._in_flight: dict[object, float] = {}

    async def run(self) -> None:
        """Register, then reconcile, report (and heartbeat when silent) until cancelled."""
        await self.register()
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            tasks.create_task(self._heartbeat_loop(), name="berth-agent-heartbeat")
            tasks.create_task(self._facts_loop(), name="berth-agent-facts")
            tasks.create_task(self._report_loop(), name="berth-agent-report")
            tasks.create_task(self._reconcile_loop(), name="berth-agent-reconcile")
            tasks.create_task(self._drift_loop(), name="berth-agent-drift")
            if self._firewall is not None:
                tasks.create_task(self._firewall.run(), name="berth-agent-firewall")

    async def register(self) -> None:
        """Register this host, retrying with back-off until the control plane answers."""
        backoff, unreachable = _Backoff(self._backoff_sleep, 0.5, 30.0), False
        while True:
            try:
                report = self._host_report(await self._runtime.host_facts())
                with self._calling():
                    await self._control.register(report)
                self._registered = report
                log.info("agent registered host %s", self.hostname)
                return
            except Exception as exc:
                again = unreachable and _unreachable(exc)  # said once is enough
                (log.debug if again else log.warning)(
                    "cannot register host %s yet: %s", self.hostname, exc
                )
                unreachable = _unreachable(exc)
                await backoff.sleep(exc)

    def _host_report(self, facts: HostFacts) -> HostReport:
        s = self._settings
        return HostReport(
            hostname=self.hostname,
            cpus=facts.cpus,
            mem_total=facts.mem_total,
            disk_total=facts.disk_total,
            runtimes=list(facts.runtimes),
            agent_url=s.effective_agent_url,
            availability_zone=s.agent_availability_zone,
            # What the engine says of itself wins over an operator's label of that name.
            labels={**s.agent_labels, **engine_labels(facts)},
            architecture=facts.architecture,
            os_type=facts.os_type,
            os=facts.os,
            kernel_version=facts.kernel_version,
            enable_cpu_pinning=s.agent_cpu_pinning,
            images=sorted(facts.images),
            underlay_ip=self._underlay_ip,
        )

    # -- the loops

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        """Around a call to the control plane: it counts as heard from us while in
        flight, and from when it began once answered (not if it failed)."""
        began, token = time.monotonic(), object()
        self._in_flight[token] = began
        try:
            yield
            self._heard_at = max(self._heard_at, began)
        finally:
            del self._in_flight[token]

    def _silent_since(self) -> float:
        """When the latest call began that was answered or is still in flight (monotonic)."""
        return max([self._heard_at, *self._in_flight.values()])

    async def _heartbeat_loop(self) -> None:
        """Heartbeat after ``heartbeat_interval`` without any other call.

        The control plane takes every call as a sign of life when it begins (the
        start of a long poll, a report), and an idle agent starts a long poll
        every ``agent_poll_wait``: while those come back, no heartbeat is sent.
        One is due when the calls stop (a pass stuck on a slow engine), fail, or
        one hangs for longer than ``heartbeat_interval``.
        """
        interval = self._settings.heartbeat_interval
        while True:
            await asyncio.sleep(max(0.01, self._silent_since() + interval - time.monotonic()))
            if time.monotonic() < self._silent_since() + interval:
                continue  # another call began meanwhile
            try:
                with self._calling():
                    await self._control.heartbeat(self.hostname)
                continue
            except ControlPlaneError as exc:
                log.warning("heartbeat failed: %s", exc.message)
                if exc.status == 404:  # the control plane forgot us: introduce ourselves again
                    await self.register()
            except Exception:
                log.exception("heartbeat failed unexpectedly")
            await asyncio.sleep(min(interval, _HEARTBEAT_RETRY))

    async def _facts_loop(self) -> None:
        """Register again when the host's facts changed (say, an image pulled or removed).

        The heartbeat stays one empty POST; the engine is asked for its info
        and images once per ``agent_facts_interval``.
        """
        while True:
            await asyncio.sleep(self._settings.agent_facts_interval)
            try:
                report = self._host_report(await self._runtime.host_facts())
                if report != self._registered:
                    with self._calling():
                        await self._control.register(report)
                    self._registered = report
                    log.info("host %s changed: registered again", self.hostname)
            except errors.BerthError as exc:  # the control plane's or the engine's
                log.warning("cannot refresh the host's facts: %s", exc.message)
            except Exception:
                log.exception("refreshing the host's facts failed unexpectedly")

    async def _reconcile_loop(self) -> None:
        generation, backoff = -1, _Backoff(self._backoff_sleep)
        unreachable = False  # while True, the control plane is retried quietly
        again = False  # the last pass failed: ask without waiting, pass again
        while True:
            try:
                if self._since and time.monotonic() >= self._resync_at:
                    self._since = ()  # the periodic resync
                wait = 0.0 if again else self._poll_wait()
                with self._calling():
                    answer = await self._control.desired(
                        self.hostname, generation, wait, self._since
                    )
                if unreachable:
                    log.info("the control plane answers again")
                    unreachable = False
                host, changed = self._fold(answer, generation)
                if host is not None and (changed or again or self._pass_due()):
                    again = True
                    await self._locked_pass(host, woken=changed)
                again = False
            except ControlPlaneError as exc:
                quiet = unreachable and exc.unreachable  # said once is enough
                (log.debug if quiet else log.warning)(
                    "cannot fetch the desired state: %s", exc.message
                )
                unreachable = exc.unreachable
                if exc.status == 404:
                    await self.register()
                await backoff.sleep(exc)
                continue
            except errors.BerthError as exc:
                log.warning("cannot list the runtime's containers: %s", exc.message)
                await backoff.sleep()
                continue
            except Exception:
                log.exception("reconcile pass failed unexpectedly")
                await backoff.sleep()
                continue
            generation = answer.generation
            backoff.reset()

    def _poll_wait(self) -> float:
        """How long a poll may wait: long while the view is current (passes run on a timer)."""
        if self._since:
            return self._settings.agent_poll_wait
        return self._settings.reconcile_interval

    def _pass_due(self) -> bool:
        return time.monotonic() - self._passed_at >= self._settings.reconcile_interval

    def _fold(self, answer: DesiredHost, generation: int) -> tuple[DesiredHost | None, bool]:
        """The whole desired state after ``answer``, and whether it says something changed.

        None when ``answer`` is a change since a revision this agent does not
        hold (one went missing, or another epoch): the next poll reads everything.
        """
        if not answer.epoch:  # the full-state protocol: every answer is everything
            self._view, self._since = answer, ()
            return answer, answer.generation != generation
        if answer.base is None:  # everything, at epoch:revision
            changed = self._since != (answer.epoch, answer.revision)
            self._view, self._since = answer, (answer.epoch, answer.revision)
            self._resync_at = time.monotonic() + _RESYNC_EVERY * random.uniform(0.8, 1.2)
            return answer, changed
        if self._view is None or self._since != (answer.epoch, answer.base):
            log.warning(
                "the desired state's changes since %s:%s do not follow revision %s: reading it all",
                answer.epoch, answer.base, self._since or "none",
            )  # fmt: skip
            self._since = ()
            return None, False
        changed = answer.revision != answer.base
        if changed:
            view = {c.uuid: c for c in self._view.containers}
            view.update((c.uuid, c) for c in answer.containers)
            for uuid in answer.removed:
                view.pop(uuid, None)
            self._view = replace(self._view, containers=list(view.values()))
        self._view.generation = answer.generation
        self._since = (answer.epoch, answer.revision)
        return self._view, changed

    async def _locked_pass(self, host: DesiredHost, *, woken: bool) -> None:
        async with self._pass_lock:
            self._passed_at = time.monotonic()
            await self._pass(host, woken=woken)

    async def _drift_loop(self) -> None:
        """With the incremental protocol, compare the host with the engine every reconcile_interval.

        The long poll then waits for changes only (``agent_poll_wait``); what the
        engine does on its own (a container exited) is seen here.
        """
        interval = self._settings.reconcile_interval
        while True:
            await asyncio.sleep(max(0.01, self._passed_at + interval - time.monotonic()))
            if not self._pass_due():
                continue
            host = self._view
            if not self._since or host is None:
                await asyncio.sleep(interval)  # the full-state protocol's polls drive the passes
                continue
            try:
                await self._locked_pass(host, woken=False)
            except errors.BerthError as exc:
                log.warning("cannot list the runtime's containers: %s", exc.message)
            except Exception:
                log.exception("reconcile pass failed unexpectedly")

    async def _report_loop(self) -> None:
        backoff = _Backoff(self._backoff_sleep, 0.5, 10.0)
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty():  # whatever queued meanwhile rides along
                batch.append(self._outbox.get_nowait())
            try:
                with self._calling():
                    await self._control.report(self.hostname, [obs for obs, _ in batch])
                backoff.reset()
            except Exception as exc:
                log.warning("cannot report %d observations: %s", len(batch), exc)
                for obs, key in batch:  # level-triggered: the next pass reports them again
                    memory = self._memory.get(obs.uuid)
                    if memory is not None and memory.reported == key:
                        memory.reported = None
                await backoff.sleep(exc)

    # -- one pass over the host

    async def _pass(self, host: DesiredHost, *, woken: bool = False) -> None:
        """Fold in the desired state and a fresh listing; start workers where needed.

        ``woken``: the control plane answered because something changed (not
        because the long poll timed out).
        """
        before = self._desired
        self._desired = {c.uuid: _networked(c, self._firewall is not None) for c in host.containers}
        if woken and self._only_added(before):
            self._pass_added(before, host)
            return
        listing = await self._runtime.list_managed()
        self._listed_at = time.monotonic()
        self._observed = {c.uuid: c for c in listing if c.uuid}
        if self._firewall is not None:
            self._firewall.desired(self._desired)
            self._firewall.remote(host.remote_members)
            for uuid in self._desired.keys() | self._observed.keys():
                seen = self._observed.get(uuid)
                if seen is None:
                    self._firewall.addresses(uuid, None, None)
                else:
                    self._firewall.addresses(uuid, seen.addresses, seen.state)
        for uuid in self._desired.keys() | self._observed.keys():
            memory = self._memory.setdefault(uuid, _Memory())
            if uuid in self._desired:
                memory.note(self._desired[uuid], self._observed.get(uuid))
            if uuid in self._workers:
                # Asked something new while its worker acts: the worker looks again
                # when it is done. (Not for every pass: during a burst of creates
                # each commit wakes a pass, and re-inspecting every busy container
                # each time doubled the engine calls. What the engine does on its
                # own meanwhile, the next pass sees.)
                if before.get(uuid) != self._desired.get(uuid):
                    self._dirty.add(uuid)
            elif self._needs_attention(uuid):
                self._spawn(uuid)
        for uuid in list(self._memory):
            gone = uuid not in self._desired and uuid not in self._observed
            if gone and uuid not in self._workers:
                self._forget(uuid)

    def _forget(self, uuid: str) -> None:
        """Drop what the agent remembers of ``uuid``, gone from the engine and the desired state."""
        self._observed.pop(uuid, None)
        memory = self._memory.pop(uuid, None)
        if memory is not None and memory.owns_volumes:
            # Gone without a delete by this agent (auto_remove: the engine
            # removed it; evacuated): its own volumes would stay behind.
            self._spawn_cleanup(uuid)

    def _only_added(self, before: dict[str, DesiredContainer]) -> bool:
        """Whether the change is new containers only, none of which the engine can have.

        A burst of creates wakes a pass per commit. When nothing that was there
        changed and what is new was neither in the last listing nor ever seen
        by this agent, that listing (younger than a reconcile interval) still
        holds: the pass needs no engine call, and the new containers' workers
        start without waiting for one (a listing takes 5-50 ms while the engine
        is busy creating). Anything else, and every timed-out poll, lists afresh.

        A container this agent removed itself may have left the desired state
        meanwhile: the control plane drops a deleted row on the removal report
        without waking the agent, so the next create is the pass that sees it
        gone. That is not news the engine must confirm (its worker is done and
        reported it removed): a delete followed by a create lists nothing either.
        """
        added = self._desired.keys() - before.keys()
        return (
            bool(added)
            and time.monotonic() - self._listed_at < self._settings.reconcile_interval
            and all(
                self._desired.get(uuid) == d if uuid in self._desired else self._removed(uuid)
                for uuid, d in before.items()
            )
            and not any(uuid in self._memory or uuid in self._observed for uuid in added)
        )

    def _removed(self, uuid: str) -> bool:
        """Whether this agent removed ``uuid`` itself and is done with it."""
        memory = self._memory.get(uuid)
        return memory is not None and memory.removed and uuid not in self._workers

    def _pass_added(self, before: dict[str, DesiredContainer], host: DesiredHost) -> None:
        if self._firewall is not None:
            self._firewall.desired(self._desired)
            self._firewall.remote(host.remote_members)
        for uuid in before.keys() - self._desired.keys():  # removed by us (_only_added)
            self._forget(uuid)
        for uuid in self._desired.keys() - before.keys():
            self._memory.setdefault(uuid, _Memory()).note(self._desired[uuid], None)
            if self._needs_attention(uuid):
                self._spawn(uuid)

    def _needs_attention(self, uuid: str) -> bool:
        desired, observed = self._desired.get(uuid), self._observed.get(uuid)
        memory = self._memory.setdefault(uuid, _Memory())
        actions = plan(desired, observed, authoritative=True, history=memory.history())
        if actions and not self._held(memory, desired):
            return True
        if desired is None:
            return False
        error, done = self._sticky_error(memory, desired), self._done_ops(memory, desired)
        provisional = observe(uuid, desired, observed, error=error, done_ops=done)
        return _report_key(provisional, desired) != memory.reported

    def _spawn_cleanup(self, uuid: str) -> None:
        assert self._tasks is not None
        self._tasks.create_task(self._drop_volumes(uuid), name=f"berth-volumes-{uuid}")

    async def _drop_volumes(self, uuid: str) -> None:
        try:
            await drop_owned_volumes(self._runtime, uuid)
        except errors.BerthError as exc:
            log.warning("cannot remove the volumes of container %s: %s", uuid, exc.message)
        except Exception:
            log.exception("removing the volumes of container %s failed unexpectedly", uuid)

    def _spawn(self, uuid: str) -> None:
        assert self._tasks is not None
        self._workers[uuid] = self._tasks.create_task(self._work(uuid), name=f"berth-{uuid}")

    async def _work(self, uuid: str) -> None:
        """The only place that acts on ``uuid``; re-runs while passes marked it dirty."""
        observed: RuntimeContainer | None = self._observed.get(uuid)
        try:
            while True:
                self._dirty.discard(uuid)
                await self._converge(uuid, observed)
                if uuid not in self._dirty:
                    return
                # A pass listed while we acted: its view may predate our own work.
                observed = await self._runtime.inspect(uuid)
        except errors.BerthError as exc:
            log.warning("container %s: %s", uuid, exc.message)
        except Exception:
            log.exception("container %s: unexpected failure", uuid)
        finally:
            del self._workers[uuid]

    async def _converge(self, uuid: str, observed: RuntimeContainer | None) -> None:
        memory = self._memory.setdefault(uuid, _Memory())
        for _ in range(_MAX_STEPS):
            desired = self._desired.get(uuid)
            actions = plan(desired, observed, authoritative=True, history=memory.history())
            if needs_detail(actions, observed):
                observed = await self._runtime.inspect(uuid)
                actions = plan(desired, observed, authoritative=True, history=memory.history())
                if desired and observed and observed.state == "stopped" and not actions:
                    # It ran after the user asked and exited on its own: settled for
                    # this request, so later passes need not inspect it again.
                    memory.started_for = desired.desired_since
            if not actions or self._held(memory, desired):
                await self._report_if_news(uuid, desired, observed, memory)
                return
            if desired is None:
                log.info("removing container %s: the control plane no longer has it", uuid)
            unfiltered = await self._filter_before_start(uuid, desired, actions)
            if unfiltered is not None:  # not started: it would have run unfiltered
                obs = observe(uuid, desired, observed, error=unfiltered,
                              done_ops=self._done_ops(memory, desired))  # fmt: skip
            else:
                obs = await apply_plan(
                    self._runtime,
                    uuid,
                    actions,
                    desired,
                    done_ops=self._done_ops(memory, desired),
                    files=self._files,
                    glance=self._glance_data,
                )
                obs = await self._filter_after_start(uuid, desired, actions, obs)
            self._remember(memory, desired, actions, obs)
            if desired is not None:
                await self._send(obs, desired, memory)
            if obs.error or not any(isinstance(a, Kill | Restart | Acknowledge) for a in actions):
                return
            observed = await self._runtime.inspect(uuid)  # ops ran alone: plan the rest

    async def _filter_before_start(
        self, uuid: str, desired: DesiredContainer | None, actions: list[Action]
    ) -> str | None:
        """On the overlay, write the container's chain before the engine starts it.

        The control plane leases its addresses in advance (``NetworkRef.address``)
        and the engine gives it exactly those, so there is no moment at which it
        runs unfiltered. (With the bridge driver the engine picks the address at
        start: the chain follows the start, see ``_filter_after_start``.) A start
        that fails leaves the chain to the next report, which removes it.

        The error to report instead of starting it when the chain cannot be
        written (fail closed, see ``_filter_after_start``).
        """
        if self._firewall is None or desired is None or not _starts(actions):
            return None
        leased = {r.id: [{"addr": r.address, "version": 4}] for r in desired.networks if r.address}
        if not leased:
            return None
        try:
            await self._firewall.settle(uuid, leased, "running")
        except errors.BerthError as exc:
            log.warning("container %s: not started, its firewall chain cannot be written: %s",
                        uuid, exc.message)  # fmt: skip
            return UNFILTERED
        return None

    async def _filter_after_start(
        self, uuid: str, desired: DesiredContainer | None, actions: list[Action], obs: Observation
    ) -> Observation:
        """Write the chain of a container this plan started; stop it if that cannot be done.

        Fail closed: a container whose security groups cannot be applied is not
        left running unfiltered (reachable by anything on its network). It is
        stopped and reported in error (held, as any failed plan: the user's next
        start tries again), as Neutron keeps a port down until it is filtered.
        """
        if self._firewall is None or desired is None or not _starts(actions):
            return obs
        if obs.error is not None or obs.state not in ADDRESSED_STATES:
            return obs
        try:
            await self._firewall.settle(uuid, obs.addresses, obs.state)
        except errors.BerthError as exc:
            log.warning("container %s: stopped, its firewall chain cannot be written: %s",
                        uuid, exc.message)  # fmt: skip
            try:
                await self._runtime.stop(uuid, 0)
                container = await self._runtime.inspect(uuid)
            except errors.BerthError as stop_exc:
                log.error("container %s runs UNFILTERED: it cannot be stopped either: %s",
                          uuid, stop_exc.message)  # fmt: skip
                return replace(obs, error=UNFILTERED)
            return observe(uuid, desired, container, error=UNFILTERED, done_ops=obs.done_ops)
        return obs

    def _glance_data(self, uuid: str) -> AsyncIterator[bytes]:
        return self._control.glance_data(self.hostname, uuid)

    async def _files(self, uuid: str) -> list[InjectedFile]:
        """The injected files of ``uuid``, content included, from the control plane."""
        return await self._control.files(self.hostname, uuid)

    async def _report_if_news(
        self,
        uuid: str,
        desired: DesiredContainer | None,
        observed: RuntimeContainer | None,
        memory: _Memory,
    ) -> None:
        if desired is None:
            return  # garbage we may not touch: nothing to tell anyone
        error, done = self._sticky_error(memory, desired), self._done_ops(memory, desired)
        obs = observe(uuid, desired, observed, error=error, done_ops=done)
        if _report_key(obs, desired) == memory.reported:
            return
        if observed is not None and not observed.detailed:
            observed = await self._runtime.inspect(uuid)  # report the full picture
            obs = observe(uuid, desired, observed, error=error, done_ops=done)
        await self._send(obs, desired, memory)

    async def _send(self, obs: Observation, desired: DesiredContainer, memory: _Memory) -> None:
        """Queue ``obs`` for the reporter, once its security-group chain is in place."""
        if self._firewall is not None:
            try:
                await self._firewall.settle(obs.uuid, obs.addresses, obs.state)
            except errors.BerthError as exc:
                # A container found running (an agent restart, a new address): its old
                # chain is still in the kernel; reported all the same, the background
                # sync retries. One this agent starts is stopped instead
                # (``_filter_after_start``).
                log.warning("container %s: cannot write its firewall chain: %s",
                            obs.uuid, exc.message)  # fmt: skip
        key = _report_key(obs, desired)
        memory.reported, memory.removed = key, obs.removed
        self._outbox.put_nowait((obs, key))

    # -- memory

    @staticmethod
    def _done_ops(memory: _Memory, desired: DesiredContainer | None) -> list[str]:
        # Reported until the control plane stops listing them: a lost report loses nothing.
        pending = desired.pending_ops if desired else []
        return [op.id for op in pending if op.id in memory.done_ops]

    @staticmethod
    def _sticky_error(memory: _Memory, desired: DesiredContainer | None) -> str | None:
        return memory.error if memory.error_intent == _intent(desired) else None

    @staticmethod
    def _held(memory: _Memory, desired: DesiredContainer | None) -> bool:
        """A plan that failed for this same intent waits out its back-off."""
        same = memory.error is not None and memory.error_intent == _intent(desired)
        return same and time.monotonic() < memory.retry_at

    @staticmethod
    def _remember(
        memory: _Memory, desired: DesiredContainer | None, actions: list[Action], obs: Observation
    ) -> None:
        memory.done_ops.update(obs.done_ops)
        if obs.runtime_id:
            memory.existed = True
        if obs.error is None:
            memory.error, memory.error_intent, memory.failures = None, None, 0
            if desired is not None and any(isinstance(a, Start) for a in actions):
                memory.started_for = desired.desired_since
            return
        intent = _intent(desired)
        memory.failures = memory.failures + 1 if memory.error_intent == intent else 1
        memory.error, memory.error_intent = obs.error, intent
        delay = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (memory.failures - 1))
        memory.retry_at = time.monotonic() + delay
