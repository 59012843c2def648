"""The Magnum-compatible cluster API (``/container-infra``): routers, views, microversions."""

__all__: list[str] = []
