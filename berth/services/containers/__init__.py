"""Containers and capsules: the use cases of Zun's container and capsule APIs.

Owns: create/list/show/update/delete (``containers``), the one-shot operations
that go to a container's agent (``ops``: start, stop, exec, logs, ...), capsules
(``capsules``), injected files (``files``), archives (``archives``: cp),
rebuild (``rebuild``), the agent's observations turned into Zun statuses
(``observations``), interactive streams (``streams``) and the events timeline
(``timeline``). May import: services.hosts, services.images, services.networks,
services.volumes, services.quotas, events, store, scheduler, domain.
"""
