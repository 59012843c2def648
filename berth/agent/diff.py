"""What to do to one container: a pure function of desired and observed state.

``plan`` never does I/O and never looks at a clock; it returns a short list of
small, frozen actions that ``apply`` runs in order. Rules, in priority order:

1. No desired entry: a managed container is garbage (its Berth container was
   deleted) and is removed, but only when the desired list is authoritative.
2. Desired ``deleted``: remove whatever exists (the observation then says removed).
   Otherwise a ``held`` container (the control plane recorded an error) is left
   exactly as it is until the user asks for something again.
3. Absent: create it (image first) and bring it to the desired state, unless it
   is known to have existed (``runtime_id``) and ``auto_heal`` is off.
4. Pending one-shot ops (reboot, kill) not yet done run alone; the caller plans
   again afterwards, against what the op left behind. A rebuild recreates the
   container from the (new) image: image first, so a bad one leaves the old
   container in place; the new container carries the rebuild's id as a label,
   so a rebuild is done exactly when the runtime container says so, whatever
   crashed in between (and a vanished container is rebuilt, not "absent").
5. A newer spec than the container reflects: update CPU/memory live.
   Networks the container should join or leave (network attach/detach) are
   connected or disconnected, stopped or running.
6. Level transitions between running, stopped and paused. A stopped container
   the user wants running is started only if it never ran or last started
   before the user asked: one that ran and exited on its own is reported,
   never restarted in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from berth.domain.hostsync import DesiredContainer, NetworkRef, PendingOp
from berth.networks.base import network_id_of
from berth.runtimes.base import LABEL_REBUILD, RuntimeContainer, parse_instant

__all__ = [
    "Acknowledge",
    "Action",
    "Connect",
    "Create",
    "Disconnect",
    "EnsureImage",
    "History",
    "Kill",
    "Pause",
    "Remove",
    "Restart",
    "Start",
    "Stop",
    "Unpause",
    "Update",
    "needs_detail",
    "plan",
]


@dataclass(frozen=True, slots=True)
class EnsureImage:
    """Make the image present, per the pull policy."""

    image: str
    pull_policy: str | None


@dataclass(frozen=True, slots=True)
class Create:
    """Create the runtime container from the spec (idempotent by name)."""

    spec: DesiredContainer


@dataclass(frozen=True, slots=True)
class Start:
    """Start the container."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop it gracefully within ``timeout`` seconds."""

    timeout: int


@dataclass(frozen=True, slots=True)
class Pause:
    """Freeze it."""


@dataclass(frozen=True, slots=True)
class Unpause:
    """Thaw it."""


@dataclass(frozen=True, slots=True)
class Kill:
    """Signal it, for the pending op ``op_id``."""

    signal: str | int | None
    op_id: str


@dataclass(frozen=True, slots=True)
class Restart:
    """Restart it, for the pending op ``op_id``."""

    timeout: int
    op_id: str


@dataclass(frozen=True, slots=True)
class Update:
    """Apply new CPU/memory limits live."""

    cpu: float | None
    memory: int | None


@dataclass(frozen=True, slots=True)
class Remove:
    """Remove the container (forcefully: the user asked for it gone)."""

    force: bool = True


@dataclass(frozen=True, slots=True)
class Connect:
    """Join the project network ``net``."""

    net: NetworkRef


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Leave the Berth network ``network_id``."""

    network_id: str


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Report the pending op ``op_id`` done: it no longer applies (e.g. kill of a stopped one)."""

    op_id: str


Action = (
    EnsureImage
    | Create
    | Start
    | Stop
    | Pause
    | Unpause
    | Kill
    | Restart
    | Update
    | Remove
    | Acknowledge
    | Connect
    | Disconnect
)


@dataclass(frozen=True, slots=True)
class History:
    """What this agent already did for a container (kept in memory by the caller).

    Both fields make the start decision independent of clocks while the agent
    runs (the timestamps compare a control plane clock with the host's):
    ``started_for`` is the ``desired_since`` whose start is settled (the agent
    started the container for it, or saw it running under it): never again.
    ``requested_since`` is a ``desired_since`` the agent saw arrive while the
    container was not running: newer than any start, so start it.
    ``existed``: the agent made or saw the container on the engine. Gone now,
    it vanished (an ``auto_remove`` container the engine removed when it
    exited): reported absent, never made again, as when the control plane's
    ``runtime_id`` says so (the agent's view of the desired state learns that
    id only at its next full read).
    """

    done_ops: frozenset[str] = frozenset()
    started_for: str | None = None
    requested_since: str | None = None
    existed: bool = False


_NO_HISTORY = History()


def plan(
    desired: DesiredContainer | None,
    observed: RuntimeContainer | None,
    *,
    authoritative: bool = False,
    history: History = _NO_HISTORY,
) -> list[Action]:
    """The actions that bring ``observed`` to ``desired``; empty when nothing is to do."""
    if desired is None:
        return [Remove()] if observed is not None and authoritative else []
    if desired.desired_state == "deleted":
        return [Remove()] if observed is not None else []
    if desired.held:
        return []
    ops = [op for op in desired.pending_ops if op.id not in history.done_ops]
    rebuild = next((op for op in reversed(ops) if op.op == "rebuild"), None)
    if rebuild is not None:
        return _rebuild(desired, observed, rebuild)
    if observed is None:
        return [Acknowledge(op.id) for op in ops] + _create(desired, history.existed)
    if ops:
        return [_one_shot(desired, observed, op) for op in ops]
    return (
        _networks(desired, observed)
        + _update(desired, observed)
        + _transition(desired, observed, history)
    )


def needs_detail(actions: list[Action], observed: RuntimeContainer | None) -> bool:
    """Whether a plan made from a sparse listing must be redone with an inspected view.

    Only a Start depends on what a listing cannot tell (the last start time).
    """
    if observed is None or observed.detailed:
        return False
    return any(isinstance(action, Start) for action in actions)


def _create(desired: DesiredContainer, existed: bool = False) -> list[Action]:
    if (desired.runtime_id or existed) and not desired.auto_heal:
        return []  # it existed and vanished: report "absent", do not resurrect it
    steps: list[Action] = [
        EnsureImage(desired.image, desired.image_pull_policy),
        Create(desired),
    ]
    if desired.desired_state == "running":
        steps.append(Start())
    elif desired.desired_state == "paused":
        steps += [Start(), Pause()]
    return steps


def _rebuild(
    desired: DesiredContainer, observed: RuntimeContainer | None, op: PendingOp
) -> list[Action]:
    if observed is not None and observed.rebuild_id == op.id:
        return [Acknowledge(op.id)]  # done before a crash lost the report
    spec = replace(desired, labels={**desired.labels, LABEL_REBUILD: op.id}, pending_ops=[])
    steps: list[Action] = [EnsureImage(desired.image, desired.image_pull_policy)]
    if observed is not None:
        steps.append(Remove())
    steps.append(Create(spec))
    if desired.desired_state in ("running", "paused"):
        steps.append(Start())
    if desired.desired_state == "paused":
        steps.append(Pause())
    return [*steps, Acknowledge(op.id)]


def _one_shot(desired: DesiredContainer, observed: RuntimeContainer, op: PendingOp) -> Action:
    if op.op == "reboot":
        return Restart(int(op.args.get("timeout") or desired.stop_timeout), op.id)
    if observed.state in ("running", "restarting"):
        return Kill(op.args.get("signal"), op.id)
    return Acknowledge(op.id)  # nothing runs: there is nothing to kill


def _networks(desired: DesiredContainer, observed: RuntimeContainer) -> list[Action]:
    """Connect the desired Berth networks it lacks, disconnect the Berth ones it should not have.

    Only Berth's own networks count: nothing when the desired state names none
    (no network driver) or the container shares another one's namespace; but a
    container detached from all its networks (``no_network``) leaves the last one.
    """
    if desired.network_container or observed.state in ("removing", "dead"):
        return []
    if not desired.networks and not desired.no_network:
        return []
    have = {i for i in (network_id_of(n) for n in observed.networks) if i is not None}
    want = {n.id for n in desired.networks}
    steps: list[Action] = [Connect(n) for n in desired.networks if n.id not in have]
    return steps + [Disconnect(i) for i in sorted(have - want)]


def _update(desired: DesiredContainer, observed: RuntimeContainer) -> list[Action]:
    applied = max(desired.applied_spec_version, observed.spec_version)
    if desired.spec_version <= applied or observed.state in ("removing", "dead"):
        return []
    if not desired.cpu and not desired.memory:
        return []
    return [Update(desired.cpu, desired.memory)]


def _transition(
    desired: DesiredContainer, observed: RuntimeContainer, history: History
) -> list[Action]:
    want, state = desired.desired_state, observed.state
    stopped = state in ("created", "stopped")
    if want == "running":
        if state == "paused":
            return [Unpause()]
        return [Start()] if stopped and _may_start(desired, observed, history) else []
    if want == "paused":
        if state == "running":
            return [Pause()]
        return [Start(), Pause()] if stopped and _may_start(desired, observed, history) else []
    if want == "stopped":
        if state in ("running", "restarting"):
            return [Stop(desired.stop_timeout)]
        if state == "paused":
            # A frozen process cannot handle SIGTERM: thaw it first.
            return [Unpause(), Stop(desired.stop_timeout)]
    return []  # "created" asks for nothing; removing/dead containers are only reported


def _may_start(desired: DesiredContainer, observed: RuntimeContainer, history: History) -> bool:
    if observed.state == "created":
        return True  # never ran
    if observed.detailed and observed.started_at is None:
        return True
    if desired.desired_since is None or history.started_for == desired.desired_since:
        return False
    if history.requested_since == desired.desired_since:
        return True
    if not observed.detailed:
        return True  # provisional: the caller inspects and plans again (needs_detail)
    started, asked = _instant(observed.started_at), _instant(desired.desired_since)
    # Unreadable times: do not start; a wrong "no" is reported, a wrong "yes" loops.
    return started is not None and asked is not None and started < asked


def _instant(text: str | None) -> datetime | None:
    try:
        return parse_instant(text)
    except ValueError:
        return None
