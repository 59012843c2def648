"""Network drivers: the host side of project networks and security groups.

The agent hands a driver the networks a container joins and the ingress its
security groups allow; the driver makes the host match. ``bridge`` is the
built-in driver (one Docker bridge network per Berth network and host, and an
iptables chain per container); Neutron/Kuryr drivers can be added behind the
same ``NetworkDriver`` Protocol without touching the agent, as entry points of
the ``berth.networks`` group (``NETWORK_DRIVERS``) selected by ``network_driver``.
"""

from berth.networks.base import (
    NETWORK_DRIVERS,
    NETWORK_PREFIX,
    FirewallRule,
    NetworkDriver,
    NetworkFactory,
    network_id_of,
    network_name,
)
from berth.networks.firewall import chain_name, chain_rules, resolve_ingress

__all__ = [
    "NETWORK_DRIVERS",
    "NETWORK_PREFIX",
    "FirewallRule",
    "NetworkDriver",
    "NetworkFactory",
    "chain_name",
    "chain_rules",
    "network_id_of",
    "network_name",
    "resolve_ingress",
]
