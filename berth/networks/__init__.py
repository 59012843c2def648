"""Network drivers: the host side of project networks and security groups.

The agent hands a driver the networks a container joins and the ingress its
security groups allow; the driver makes the host match. ``bridge`` is the
built-in driver (one Docker bridge network per Berth network and host, and an
iptables chain per container); Neutron/Kuryr drivers can be added behind the
same ``NetworkDriver`` Protocol without touching the agent.
"""

from berth.networks.base import (
    NETWORK_PREFIX,
    FirewallRule,
    NetworkDriver,
    network_id_of,
    network_name,
)
from berth.networks.firewall import chain_name, chain_rules, resolve_ingress

__all__ = [
    "NETWORK_PREFIX",
    "FirewallRule",
    "NetworkDriver",
    "chain_name",
    "chain_rules",
    "network_id_of",
    "network_name",
    "resolve_ingress",
]
