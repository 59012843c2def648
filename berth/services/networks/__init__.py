"""Project networks and security groups (Zun's network and security-group actions).

Owns: networks (``networks``) and security groups with their rules
(``security_groups``). The data plane is the agent's network driver; these use
cases only record what the agents must converge to. May import: events, store,
domain.
"""
