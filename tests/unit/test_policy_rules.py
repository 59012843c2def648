"""Every policy rule the code enforces is defined (an undefined one denies everybody).

The scan reads the source of the layers that ask the policy (api, services,
dashboard): every string literal shaped like a rule name must be a rule, and
every f-string that builds one (``container:{action}``, ``cluster:{rule}``...)
must be listed below with the names it can produce, which must be rules too.
A new f-string fails the test until it is listed here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from berth.domain.policy import DEFAULT_RULES

ROOT = Path(__file__).resolve().parents[2] / "berth"
LAYERS = ("api", "services", "dashboard")
PREFIXES = sorted({name.split(":", 1)[0] for name in DEFAULT_RULES if ":" in name})
RULE_LIKE = re.compile(rf"(?:{'|'.join(map(re.escape, PREFIXES))}):[a-z_]+(?::[a-z_]+)?")

# Literals that are not rules themselves but stems: the code appends "_all_projects".
STEMS = {"clustertemplate:get_one"}

_CONTAINER_ACTIONS = {"start", "stop", "reboot", "pause", "unpause"}  # container_ops._act
_CONTAINER_CALLS = {"logs", "execute", "top", "stats"}  # container_ops' agent calls
_STREAM_AND_ARCHIVE = {  # host_calls.container_for's other callers (streams, archives)
    "execute", "attach", "resize", "execute_resize", "logs", "get_archive", "put_archive",
}  # fmt: skip
_CLUSTER_FIND = {"get_one", "update", "upgrade", "delete"}  # clusters._find's callers
_TEMPLATE_SCOPES = {  # cluster_templates._scope's callers
    "clustertemplate:get_all", "clustertemplate:detail", "clustertemplate:get_one",
    "clustertemplate:update", "clustertemplate:delete",
}  # fmt: skip

# (module, f-string as written) -> every rule name it can build.
BUILT: dict[tuple[str, str], set[str]] = {
    ("api/zun/views.py", "f'container:get_one:{field}'"): {
        f"container:get_one:{f}" for f in ("host", "image_pull_policy", "privileged", "runtime")
    },
    ("services/clusters/nodegroups.py", "f'nodegroup:{rule}'"): {
        "nodegroup:get", "nodegroup:get_all",
    },
    ("services/clusters/templates.py", "f'clustertemplate:{rule}'"): {
        "clustertemplate:get_all", "clustertemplate:detail",
    },
    ("services/clusters/templates.py", "f'{rule}_all_projects'"): {
        f"{stem}_all_projects" for stem in _TEMPLATE_SCOPES
    },
    ("services/clusters/clusters.py", "f'cluster:{rule}_all_projects'"): {
        f"cluster:{r}_all_projects" for r in {"get_all", "detail", *_CLUSTER_FIND}
    },
    ("services/clusters/clusters.py", "f'cluster:{rule}'"): {"cluster:get_all", "cluster:detail"},
    ("services/containers/ops.py", "f'container:{action}'"): {
        f"container:{a}" for a in _CONTAINER_ACTIONS
    },
    ("dashboard/container_pages.py", "f'container:{value}'"): {  # the action buttons
        f"container:{a}" for a in ("start", "stop", "reboot", "pause", "unpause", "kill", "delete")
    },
    ("services/containers/containers.py", "f'container:{a}'"): {  # _NODE_GUARDED
        f"container:{a}"
        for a in ("execute", "attach", "get_archive", "put_archive", "commit", "rebuild",
                  "update", "resize_container")
    },
    ("services/containers/containers.py", "f'container:{action}'"): {
        "container:update", "container:resize_container",
    },
    ("services/hosts/calls.py", "f'container:{action}'"): {
        f"container:{a}" for a in _STREAM_AND_ARCHIVE | _CONTAINER_CALLS
    },
    ("services/networks/networks.py", "f'container:{action}'"): {
        "container:network_attach", "container:network_detach",
    },
    ("services/networks/security_groups.py", "f'container:{action}'"): {
        "container:add_security_group", "container:remove_security_group",
    },
}  # fmt: skip


def _sources() -> list[tuple[str, ast.AST]]:
    return [
        (str(path.relative_to(ROOT)), ast.parse(path.read_text()))
        for layer in LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
    ]


def _builds_rule(node: ast.JoinedStr) -> bool:
    first = node.values[0]
    if isinstance(first, ast.Constant):
        return RULE_LIKE.match(str(first.value) + "x") is not None
    last = node.values[-1]
    return isinstance(last, ast.Constant) and str(last.value).endswith("_all_projects")


def test_every_rule_literal_is_defined() -> None:
    missing = [
        f"{module}:{node.lineno} {node.value!r}"
        for module, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and RULE_LIKE.fullmatch(node.value)
        and node.value not in DEFAULT_RULES
        and node.value not in STEMS
    ]
    assert not missing, f"enforced but not in DEFAULT_RULES: {missing}"


def test_every_built_rule_name_is_listed_here() -> None:
    found = {
        (module, ast.unparse(node))
        for module, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr) and _builds_rule(node)
    }
    assert found == set(BUILT), "list each new f-string rule and what it builds in BUILT"


@pytest.mark.parametrize("site", sorted(BUILT), ids=lambda site: f"{site[0]}:{site[1]}")
def test_every_built_rule_name_is_defined(site: tuple[str, str]) -> None:
    assert sorted(BUILT[site] - set(DEFAULT_RULES)) == []


def test_stems_name_all_projects_rules() -> None:
    assert {f"{stem}_all_projects" for stem in STEMS} <= set(DEFAULT_RULES)
