"""The swarm-mode converge, step by step: one level-triggered pass that can be re-run.

Read the node containers that exist, plan against the desired node groups
(``plan.py``), then:

1. bring up the nodes of the current generation (``bring_up_fresh``);
2. form the swarm: a manager (kept, or being replaced), else ``swarm init`` on the
   first master, its ingress network made again to fit the nodes' MTU; join the
   others (``form_swarm``), each node's ``docker_gwbridge`` made first with its MTU;
3. replace nodes of an older generation, new before old: workers
   ``max_batch_size`` at a time, masters one by one (``rolling_replace``);
4. retire surplus nodes, drained first (``retire_surplus``);
5. wait until every node is Ready, set the node labels, read the versions (``finish``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from berth.clusters.driver import NodeInfo, Outcome
from berth.clusters.swarm.nodeapi import NodeApi
from berth.clusters.swarm.plan import Plan, Replacement, Slot, batches, plan
from berth.clusters.swarm.run import Run, SwarmError, api_address

__all__ = ["converge"]


@dataclass(slots=True)
class _State:
    """What a converge knows as it goes: the plan, the nodes that run, the managers."""

    todo: Plan
    # The running node of each desired slot, by slot name.
    infos: dict[str, NodeInfo] = field(default_factory=dict)
    # The nodes that are (or will be) swarm managers: retiring one asks another.
    managers: list[NodeInfo] = field(default_factory=list)


async def converge(run: Run) -> Outcome:
    """Converge the cluster's nodes to ``run.spec`` and return its addresses and versions."""
    # Planning is proportional to the node counts: off the event loop (the
    # worker refuses a cluster above the operator's max_nodes_per_cluster first).
    existing = await run.nodes.list_nodes()
    state = _State(await asyncio.to_thread(plan, run.spec, existing))
    if not any(s.manager for s in state.todo.slots):
        raise SwarmError("a swarm-mode cluster needs at least one master")
    await bring_up_fresh(run, state)
    await form_swarm(run, state)
    await rolling_replace(run, state)
    await retire_surplus(run, state)
    return await finish(run, state)


def _fresh(todo: Plan) -> list[Slot]:
    """The slots whose node is of the current generation (kept or to create)."""
    return [s for s, _ in todo.keep] + todo.create


async def bring_up_fresh(run: Run, state: _State) -> None:
    """1. Every node of the current generation runs and answers over TLS."""
    todo, fresh = state.todo, _fresh(state.todo)
    if todo.create:
        await run.report(f"Creating {len(todo.create)} node(s): "
                         f"{', '.join(s.name for s in todo.create)}.")  # fmt: skip
    infos = await asyncio.gather(*(run.bring_up(s) for s in fresh))
    state.infos.update(zip([s.name for s in fresh], infos, strict=True))
    olds = [n for _, ns in todo.replace for n in ns]
    running_olds = [n for n in olds if n.status == "Running" and n.address]
    state.managers = [state.infos[s.name] for s in fresh if s.manager] + running_olds


async def form_swarm(run: Run, state: _State) -> None:
    """2. A manager (kept, or being replaced), else init on the first master; join the rest."""
    fresh = _fresh(state.todo)
    fresh_masters = [state.infos[s.name] for s in fresh if s.manager]
    manager = await run.manager(state.managers)
    if manager is None:
        if not fresh_masters:
            raise SwarmError("no master node is running to form the swarm")
        await run.report(f"Initialising the swarm on {fresh_masters[0].name}.")
        first = run.api(fresh_masters[0])
        await run.gateway_bridge(first)
        await asyncio.to_thread(first.swarm_init)
        manager = first
    await run.ingress(manager, [state.infos[s.name] for s in fresh])
    to_join = [s for s in fresh if run.apis[s.name] is not manager]
    if to_join:
        await run.report(f"Joining {len(to_join)} node(s) to the swarm.")
    for slot in sorted(to_join, key=lambda s: not s.manager):
        await run.join(run.api(state.infos[slot.name]), manager, slot.manager)


async def rolling_replace(run: Run, state: _State) -> None:
    """3. Nodes of an older generation (upgrade, CA rotation) are replaced, new before old."""
    for batch in batches(state.todo.replace, run.spec.max_batch_size):
        await _replace_batch(run, state, batch)


async def _replace_batch(run: Run, state: _State, batch: list[Replacement]) -> None:
    """The new nodes of ``batch`` come up, join and are Ready; then the old ones retire."""
    leaving = ", ".join(n.name for _, previous in batch for n in previous)
    await run.report(f"Replacing {leaving} by {', '.join(s.name for s, _ in batch)}.")
    news = list(await asyncio.gather(*(run.bring_up(s) for s, _ in batch)))
    current = await _reachable_manager(run, [*state.managers, *news])
    for (slot, _), info in zip(batch, news, strict=True):
        state.infos[slot.name] = info
        await run.join(run.api(info), current, slot.manager)
    await run.wait_all_ready(current, news)
    for (slot, previous), info in zip(batch, news, strict=True):
        if slot.manager:
            state.managers.append(info)
        for old in previous:
            await _retire(run, state, old)


async def retire_surplus(run: Run, state: _State) -> None:
    """4. Surplus nodes (resize down, ``nodes_to_remove``, a removed group) leave, drained."""
    for old in state.todo.retire:
        await _retire(run, state, old)


async def _retire(run: Run, state: _State, old: NodeInfo) -> None:
    await run.retire(old, state.managers)
    state.managers = [m for m in state.managers if m.name != old.name]


async def _reachable_manager(run: Run, candidates: list[NodeInfo]) -> NodeApi:
    manager = await run.manager(candidates)
    if manager is None:
        raise SwarmError("no reachable swarm manager")
    return manager


async def finish(run: Run, state: _State) -> Outcome:
    """5. Every node Ready (stale entries pruned), node labels set; the cluster's addresses."""
    slots = state.todo.slots
    final = await _reachable_manager(run, state.managers)
    names = {s.name for s in slots}
    await run.report(f"Waiting for {len(names)} node(s) to be Ready in the swarm.")
    node_ids = await run.wait_all_ready(final, [state.infos[s.name] for s in slots], prune=True)
    if relabelled := await run.label(final, slots, node_ids):
        await run.report(f"Set the node labels of {relabelled} node(s).")
    version = await asyncio.to_thread(final.version)
    masters = [state.infos[s.name] for s in slots if s.manager]
    master_addrs = tuple(m.address or "" for m in masters)
    node_addrs = tuple(state.infos[s.name].address or "" for s in slots if not s.manager)
    return Outcome(
        api_address=api_address(masters[0]),
        master_addresses=master_addrs,
        node_addresses=node_addrs,
        coe_version=str(version.get("Version", "")),
        container_version=str(version.get("ApiVersion", "")),
    )
