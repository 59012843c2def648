"""Magnum's use cases: cluster templates, clusters, node groups, quotas, certificates.

Owns: templates (``templates``), clusters (``clusters``), node groups
(``nodegroups``, ``groups`` for the shared group logic), what a cluster costs
against the container quota (``costs``), Magnum quotas and the conductor
heartbeat (``quotas``), the lifecycle worker that drives a cluster driver
(``lifecycle``), health polling (``health``) and the node provisioner the
drivers are handed (``nodes``). May import: services.containers (a node is a
container), services.networks, services.quotas, events, clusters (drivers, PKI),
store, domain.
"""
