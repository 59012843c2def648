"""tests/tempest/runner.py reads tempest's result lines and judges them against EXPECTED."""

from __future__ import annotations

from tests.tempest.expected import EXPECTED
from tests.tempest.runner import judge, parse

ZUN = "zun_tempest_plugin.tests.tempest.api.test_containers.TestContainer"
NEUTRON = f"{ZUN}.test_run_container_with_network"
CLUSTER = "magnum_tempest_plugin.tests.api.v1.test_cluster.ClusterTest"

OUTPUT = f"""
2026-12-06 08:38:05,518 4394 INFO     [tempest.lib.common.rest_client] Request ... ok
{{0}} {ZUN}.test_create_container[id-b8946b8c-57d5-4fdc-a09a-001d6b552725] [4.071042s] ... ok
{{1}} {NEUTRON}[id-f55dbe0d-3e8a-4798-9267-c9b13361e721] [0.007063s] ... FAILED
{{1}} {ZUN}.test_reboot_container ... SKIPPED: temporarily disabled
{{0}} setUpClass (magnum_tempest_plugin.tests.api.v1.rbac.test_cluster.ClusterTest) ... SKIPPED: \
Tempest is not configured to enforce_scope for magnum
{{0}} setUpClass ({CLUSTER}) [0.000000s] ... FAILED
"""


def test_parse_reads_every_result_line_and_nothing_else() -> None:
    found = [(o.test, o.status, o.reason) for o in parse(OUTPUT)]
    assert found == [
        (f"{ZUN}.test_create_container", "ok", ""),
        (NEUTRON, "FAILED", ""),
        (f"{ZUN}.test_reboot_container", "SKIPPED", "temporarily disabled"),
        (
            "setUpClass (magnum_tempest_plugin.tests.api.v1.rbac.test_cluster.ClusterTest)",
            "SKIPPED",
            "Tempest is not configured to enforce_scope for magnum",
        ),
        (f"setUpClass ({CLUSTER})", "FAILED", ""),
    ]


def test_judge_flags_unlisted_failures_and_listed_passes() -> None:
    assert NEUTRON in EXPECTED
    outcomes = parse(OUTPUT)
    failed, passes_now = judge(outcomes)
    # The Neutron test is listed; the failing class set-up is not: Berth broke something.
    assert failed == [f"setUpClass ({CLUSTER})"]
    assert passes_now == []
    _, stale = judge(parse(OUTPUT.replace("[0.007063s] ... FAILED", "[0.007063s] ... ok")))
    assert stale == [NEUTRON]
