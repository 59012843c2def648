"""The ``berth`` command line.

``main`` assembles the command; ``containers`` (``berth container …``) and
``local`` (``up``/``down``/``status``) hold the commands; ``client`` speaks
Berth's HTTP API with ``credentials`` from ``OS_*``/clouds.yaml; ``render``
draws tables and the live wait display; ``serve`` holds the process entry
points (``berth-api``, ``berth-agent``, ``berth-worker``).
"""

__all__: list[str] = []
