"""The tests of tempest's Zun and Magnum plugins that fail against Berth, and why.

tests/tempest/runner.py fails a run when a test fails that is not listed here, or
when a listed test passes (the table is stale). One is a difference from Magnum 23
that docs/compatibility.md documents (``image_id`` existence); every other one needs
an OpenStack service Berth does not have, or fails against Magnum 23 too.
docs/compatibility.md "OpenStack's own test suites" has the whole account.
"""

from __future__ import annotations

__all__ = ["EXPECTED"]

_ZUN = "zun_tempest_plugin.tests.tempest.api.test_containers."
_MAGNUM = "magnum_tempest_plugin.tests.api.v1."

_NEUTRON_NETWORKS = (
    "makes Neutron networks, subnets or ports for the container (Berth has no Neutron: "
    "its networks are its own, /v1/networks)"
)
_NEUTRON_GROUPS = "reads the container's security groups from Neutron's ports (no Neutron)"
_KEYPAIR = (
    "needs a Nova keypair: with magnum keypair_name set the plugin creates it through Nova "
    "(no Nova); left empty, the template's keypair_id is '', which Magnum 23 refuses too"
)

EXPECTED: dict[str, str] = {
    **{
        f"{_ZUN}{cls}.{test}": _NEUTRON_NETWORKS
        for cls in ("TestContainer", "TestContainerLegacy")
        for test in (
            "test_run_container_with_network",
            "test_run_container_with_no_gateway_subnet",
            "test_run_container_with_port",
            "test_run_container_with_port_in_dual_net",
            "test_run_container_with_shared_network",
        )
    },
    **{
        f"{_ZUN}{cls}.test_run_container_with_security_groups": _NEUTRON_GROUPS
        for cls in ("TestContainer", "TestContainerLegacy")
    },
    f"{_ZUN}TestContainer.test_run_container_without_security_groups": _NEUTRON_GROUPS,
    f"{_ZUN}TestContainer.test_container_expose_port": _NEUTRON_GROUPS,
    f"{_ZUN}TestContainer.test_run_container_with_cinder_volume_dynamic_created": (
        "looks the volume up in Cinder (no Cinder: Berth's volumes are local)"
    ),
    **{
        f"{_MAGNUM}test_cluster_template.ClusterTemplateTest.{test}": _KEYPAIR
        for test in (
            "test_create_cluster_template",
            "test_delete_cluster_template_by_name",
            "test_delete_cluster_template_by_uuid",
            "test_list_cluster_templates",
            "test_update_cluster_template_by_uuid",
            "test_update_cluster_template_invalid_patch",
            "test_update_cluster_template_public_by_uuid",
        )
    },
    f"{_MAGNUM}test_cluster_template_admin.ClusterTemplateAdminTest"
    ".test_update_cluster_template_public_by_uuid": _KEYPAIR,
    f"{_MAGNUM}test_cluster.ClusterTest.test_create_cluster_with_nonexisting_flavor": _KEYPAIR,
    **{
        f"{_MAGNUM}{rbac}test_cluster.ClusterTest.test_create_cluster_with_zero_nodes": (
            "posts node_count 0 without a microversion header (1.1): Magnum 23's 1.1-1.9 "
            "ClustersController.post raises ZeroNodeCountNotSupported (400), and so does Berth"
        )
        for rbac in ("", "rbac.")
    },
    **{
        f"{_MAGNUM}{rbac}test_cluster.ClusterTest.test_create_list_sign_delete_clusters": (
            "needs a Kubernetes cluster (it lists nodes with the kubernetes client): Berth has "
            "no kubernetes driver; its swarm-mode cluster is created, listed, its CA read and "
            "a client certificate signed before that"
        )
        for rbac in ("", "rbac.")
    },
    # The classic class passes this one only because of the empty keypair's 400.
    f"{_MAGNUM}rbac.test_cluster_template.ClusterTemplateTest"
    ".test_create_cluster_template_missing_image": (
        "its image_id is a random well-formed name, which Berth accepts as a Docker reference "
        "that the nodes' hosts pull (docs/compatibility.md, image_id existence); Magnum asks "
        "Glance and answers 400"
    ),
}
