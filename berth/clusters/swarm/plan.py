"""Pure planning for the swarm-mode driver: node names, generations, and the diff to converge.

A node's name says everything the driver needs to find it again after a crash:
``<cluster uuid[:8]>-<node group>-<index>-<generation>``. The *generation* is a
short hash of what a node is made from (its image and the cluster CA): an
upgrade (new image) or a CA rotation changes it, and every node of an older
generation is replaced by a new one, one at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from berth.clusters.driver import ClusterSpec, NodeGroupSpec, NodeInfo

__all__ = [
    "NodeName",
    "Plan",
    "Replacement",
    "Slot",
    "batches",
    "generation",
    "groups_of",
    "node_name",
    "parse_name",
    "plan",
]

_GEN_LEN = 6


def generation(image: str, ca_cert_pem: str) -> str:
    """What a node is made from, as a short hash: a new image or CA means new nodes."""
    return hashlib.sha256(f"{image}\n{ca_cert_pem.strip()}".encode()).hexdigest()[:_GEN_LEN]


def _slug(group: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")[:24] or "group"


def node_name(cluster_uuid: str, group: str, index: int, gen: str) -> str:
    """``<uuid[:8]>-<group>-<index>-<generation>`` (also the node's hostname)."""
    return f"{cluster_uuid[:8]}-{_slug(group)}-{index}-{gen}"


@dataclass(frozen=True, slots=True)
class NodeName:
    group: str
    index: int
    gen: str


def parse_name(cluster_uuid: str, name: str) -> NodeName | None:
    """The parts of a node name of this cluster, or None for a foreign name."""
    prefix = f"{cluster_uuid[:8]}-"
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[2]) != _GEN_LEN:
        return None
    return NodeName(parts[0], int(parts[1]), parts[2])


def groups_of(spec: ClusterSpec) -> tuple[NodeGroupSpec, ...]:
    """The desired node groups (from the counts when the spec carries none)."""
    if spec.nodegroups:
        return spec.nodegroups
    return (
        NodeGroupSpec("default-master", "master", spec.master_count, spec.cpu,
                      spec.memory_mb, spec.image, spec.labels),
        NodeGroupSpec("default-worker", "worker", spec.node_count, spec.cpu,
                      spec.memory_mb, spec.image, spec.labels),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Slot:
    """One desired node: a place in a node group and the name it has at this generation."""

    group: NodeGroupSpec
    index: int
    name: str

    @property
    def manager(self) -> bool:
        return self.group.role == "master"


@dataclass(slots=True)
class Plan:
    """What to do to converge: nodes to keep, create, replace (new then old) and retire."""

    keep: list[tuple[Slot, NodeInfo]] = field(default_factory=list)
    create: list[Slot] = field(default_factory=list)
    replace: list[tuple[Slot, list[NodeInfo]]] = field(default_factory=list)
    retire: list[NodeInfo] = field(default_factory=list)

    @property
    def slots(self) -> list[Slot]:
        """Every desired node, masters first."""
        found = [s for s, _ in self.keep] + self.create + [s for s, _ in self.replace]
        return sorted(found, key=lambda s: (not s.manager, s.group.name, s.index))


def plan(spec: ClusterSpec, existing: Sequence[NodeInfo]) -> Plan:
    """Compare the desired node groups with the node containers that exist."""
    by_slot: dict[tuple[str, int], list[NodeInfo]] = {}
    result = Plan()
    for node in existing:
        parsed = parse_name(spec.uuid, node.name)
        if parsed is None:
            result.retire.append(node)
            continue
        by_slot.setdefault((parsed.group, parsed.index), []).append(node)
    for group in groups_of(spec):
        gen = generation(group.image, spec.ca_cert_pem)
        for index in _indexes(group, by_slot):
            slot = Slot(group, index, node_name(spec.uuid, group.name, index, gen))
            present = by_slot.pop((_slug(group.name), index), [])
            current = [n for n in present if n.name == slot.name]
            older = [n for n in present if n.name != slot.name]
            if current:
                result.keep.append((slot, current[0]))
                result.retire.extend(older)
            elif older:
                result.replace.append((slot, older))
            else:
                result.create.append(slot)
    for leftovers in by_slot.values():
        result.retire.extend(leftovers)
    result.replace.sort(key=lambda r: (r[0].manager, r[0].group.name, r[0].index))
    return result


def _indexes(group: NodeGroupSpec, by_slot: dict[tuple[str, int], list[NodeInfo]]) -> list[int]:
    """The slot indexes ``group`` keeps: its nodes' own, lowest first, then new ones.

    A node named in ``nodes_to_remove`` gives its slot up (and the slot is not
    reused in this plan, so a node removed at the same count is replaced by a new
    one rather than kept under its old name); surplus slots go from the top.
    """
    slug = _slug(group.name)
    taken = sorted(i for g, i in by_slot if g == slug)
    taken_set = set(taken)
    removing = set(group.nodes_to_remove)
    doomed = {i for i in taken if any(n.name in removing for n in by_slot[(slug, i)])}
    chosen = [i for i in taken if i not in doomed][: max(0, group.node_count)]
    free = (i for i in itertools.count() if i not in taken_set)
    while len(chosen) < group.node_count:
        chosen.append(next(free))
    return sorted(chosen)


Replacement = tuple[Slot, list[NodeInfo]]


def batches(replace: Sequence[Replacement], size: int) -> list[list[Replacement]]:
    """The rolling replace in steps: workers ``size`` at a time, then masters one by one.

    ``size`` is the upgrade's ``max_batch_size``; masters always go singly so the
    swarm keeps its quorum of managers.
    """
    workers = [r for r in replace if not r[0].manager]
    masters = [r for r in replace if r[0].manager]
    step = max(1, size)
    out = [workers[i : i + step] for i in range(0, len(workers), step)]
    return out + [[r] for r in masters]
