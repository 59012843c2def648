"""The agent's pure decision: one row per rule of ``berth.agent.diff.plan``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from berth.agent.diff import (
    Acknowledge,
    Action,
    Create,
    EnsureImage,
    History,
    Kill,
    Pause,
    Remove,
    Restart,
    Start,
    Stop,
    Unpause,
    Update,
    needs_detail,
    plan,
)
from berth.domain.hostsync import DesiredContainer, PendingOp
from berth.runtimes.base import RuntimeContainer

T0 = "2030-01-01T10:00:00+00:00"  # the user asked
BEFORE = "2030-01-01T09:59:00+00:00"
AFTER = "2030-01-01T10:00:05+00:00"


def want(state: str = "running", **kw: Any) -> DesiredContainer:
    base = DesiredContainer(
        uuid="u1",
        name="web",
        project_id="p1",
        image="busybox:1",
        desired_state=state,  # type: ignore[arg-type]
        spec_version=1,
        desired_since=T0,
    )
    return replace(base, **kw)


def seen(state: str = "running", **kw: Any) -> RuntimeContainer:
    base = RuntimeContainer(
        uuid="u1",
        runtime_id="abc",
        state=state,  # type: ignore[arg-type]
        status_detail="",
        spec_version=1,
        started_at=None if state == "created" else BEFORE,
    )
    return replace(base, **kw)


def create_steps(d: DesiredContainer, *tail: Action) -> list[Action]:
    return [EnsureImage(d.image, d.image_pull_policy), Create(d), *tail]


REBOOT = PendingOp("op1", "reboot")
KILL = PendingOp("op2", "kill", {"signal": "SIGTERM"})

CASES: list[
    tuple[str, DesiredContainer | None, RuntimeContainer | None, dict[str, Any], list[Action]]
] = [
    # -- no desired entry
    ("nothing anywhere", None, None, {}, []),
    ("garbage is removed once authoritative", None, seen(), {"authoritative": True}, [Remove()]),
    ("garbage is kept before the first fetch", None, seen(), {}, []),
    # -- deleted
    ("deleted and present", want("deleted"), seen(), {}, [Remove()]),
    ("deleted and absent", want("deleted"), None, {}, []),
    (
        "deleted wins over pending ops",
        want("deleted", pending_ops=[REBOOT]),
        seen(),
        {},
        [Remove()],
    ),
    # -- held after an error: hands off, except for a delete
    ("held and absent: no retry", want(held=True), None, {}, []),
    ("held and stopped: no start", want(held=True), seen("stopped"), {}, []),
    ("held with a pending op", want(held=True, pending_ops=[REBOOT]), seen(), {}, []),
    ("held but deleted", want("deleted", held=True), seen(), {}, [Remove()]),
    # -- absent
    ("absent, want running", want(), None, {}, create_steps(want(), Start())),
    ("absent, want created", want("created"), None, {}, create_steps(want("created"))),
    ("absent, want stopped", want("stopped"), None, {}, create_steps(want("stopped"))),
    (
        "absent, want paused",
        want("paused"),
        None,
        {},
        create_steps(want("paused"), Start(), Pause()),
    ),
    ("vanished, no auto_heal", want(runtime_id="abc"), None, {}, []),
    (
        "vanished, auto_heal",
        want(runtime_id="abc", auto_heal=True),
        None,
        {},
        create_steps(want(runtime_id="abc", auto_heal=True), Start()),
    ),
    (
        "absent with a pending op: acknowledged, then created",
        want(pending_ops=[REBOOT]),
        None,
        {},
        [Acknowledge("op1"), *create_steps(want(pending_ops=[REBOOT]), Start())],
    ),
    # -- level transitions
    ("running as wanted", want(), seen(), {}, []),
    ("running, want stopped", want("stopped", stop_timeout=3), seen(), {}, [Stop(3)]),
    ("running, want paused", want("paused"), seen(), {}, [Pause()]),
    ("paused, want running", want(), seen("paused"), {}, [Unpause()]),
    ("paused, want stopped", want("stopped"), seen("paused"), {}, [Unpause(), Stop(10)]),
    ("restarting, want stopped", want("stopped"), seen("restarting"), {}, [Stop(10)]),
    ("created, want running", want(), seen("created"), {}, [Start()]),
    ("created, want created", want("created"), seen("created"), {}, []),
    ("running, want created: leave it", want("created"), seen(), {}, []),
    ("stopped, want stopped", want("stopped"), seen("stopped"), {}, []),
    ("dead is only reported", want(), seen("dead"), {}, []),
    ("removing is only reported", want("stopped"), seen("removing"), {}, []),
    # -- a stopped container and a wish to run
    (
        "stopped before the request: start",
        want(),
        seen("stopped", started_at=BEFORE),
        {},
        [Start()],
    ),
    ("ran after the request and exited: report", want(), seen("stopped", started_at=AFTER), {}, []),
    ("no request time: never restart", want(desired_since=None), seen("stopped"), {}, []),
    (
        "already started for this request",
        want(),
        seen("stopped", started_at=BEFORE),
        {"history": History(started_for=T0)},
        [],
    ),
    ("sparse listing: provisional start", want(), seen("stopped", detailed=False), {}, [Start()]),
    ("stopped, want paused", want("paused"), seen("stopped"), {}, [Start(), Pause()]),
    ("exited on its own, want paused", want("paused"), seen("stopped", started_at=AFTER), {}, []),
    (
        "a naive request time is UTC",
        want(desired_since="2030-01-01 10:00:00.000000"),
        seen("stopped", started_at=AFTER),
        {},
        [],
    ),
    (
        "an unreadable request time never starts",
        want(desired_since="soon"),
        seen("stopped"),
        {},
        [],
    ),
    # -- one-shot ops
    ("reboot", want(pending_ops=[REBOOT]), seen(), {}, [Restart(10, "op1")]),
    (
        "reboot with its own timeout",
        want(pending_ops=[PendingOp("op1", "reboot", {"timeout": "5"})]),
        seen(),
        {},
        [Restart(5, "op1")],
    ),
    ("kill a running one", want(pending_ops=[KILL]), seen(), {}, [Kill("SIGTERM", "op2")]),
    ("kill a stopped one", want(pending_ops=[KILL]), seen("stopped"), {}, [Acknowledge("op2")]),
    (
        "ops run alone, in order",
        want("stopped", pending_ops=[REBOOT, KILL]),
        seen(),
        {},
        [Restart(10, "op1"), Kill("SIGTERM", "op2")],
    ),
    (
        "a done op is not repeated",
        want("stopped", pending_ops=[REBOOT]),
        seen(),
        {"history": History(done_ops=frozenset({"op1"}))},
        [Stop(10)],
    ),
    # -- live updates
    (
        "newer spec: update",
        want(spec_version=3, applied_spec_version=2, cpu=0.5, memory=64),
        seen(),
        {},
        [Update(0.5, 64)],
    ),
    (
        "the label already has this version",
        want(spec_version=3, cpu=0.5, memory=64),
        seen(spec_version=3),
        {},
        [],
    ),
    ("applied already", want(spec_version=3, applied_spec_version=3, cpu=1.0), seen(), {}, []),
    (
        "update then stop",
        want("stopped", spec_version=2, memory=64),
        seen(),
        {},
        [Update(None, 64), Stop(10)],
    ),
    ("no limits to update", want(spec_version=2), seen(), {}, []),
]


@pytest.mark.parametrize(
    ("desired", "observed", "options", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_plan(
    desired: DesiredContainer | None,
    observed: RuntimeContainer | None,
    options: dict[str, Any],
    expected: list[Action],
) -> None:
    assert plan(desired, observed, **options) == expected


@pytest.mark.parametrize(
    ("actions", "observed", "expected"),
    [
        ([Start()], seen("stopped", detailed=False), True),
        ([Start()], seen("stopped"), False),
        ([Stop(10)], seen(detailed=False), False),
        ([Start()], None, False),
    ],
)
def test_needs_detail(
    actions: list[Action], observed: RuntimeContainer | None, expected: bool
) -> None:
    assert needs_detail(actions, observed) is expected


def test_plan_is_pure() -> None:
    desired, observed = want(pending_ops=[REBOOT]), seen("stopped")
    before = (replace(desired), replace(observed))
    plan(desired, observed, authoritative=True)
    assert (desired, observed) == before


def test_a_request_seen_arriving_starts_despite_the_clocks() -> None:
    # The host clock runs ahead: the container "started" after the user's new request.
    desired, observed = want(), seen("stopped", started_at=AFTER)
    assert plan(desired, observed) == []
    assert plan(desired, observed, history=History(requested_since=T0)) == [Start()]
    settled = History(started_for=T0, requested_since=T0)
    assert plan(desired, observed, history=settled) == []
