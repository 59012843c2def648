"""Identity queries: one module per aggregate (Keystone's objects and the login counters).

``common`` (lookups by id, unique-constraint conflicts), ``domains``, ``projects``,
``users``, ``roles`` (roles, grants and assignments), ``tokens`` and
``login_failures`` (the password throttle's counters). Identity is not
project-owned: the services check the admin role, so these take no ``Scope``.
"""
