"""Keystone-v3-compatible identity core: passwords, tokens, catalog, roles. No I/O.

Words: a *user* holds *roles* on a *project* (or a *domain*); a *token* is a
random secret whose SHA-256 digest is stored, scoped to one project or domain
(or unscoped); its *effective roles* are the roles held plus the roles they
imply (admin ⊃ member ⊃ reader). The *catalog* tells clients where the
identity, container and later container-infra APIs live.

Flow: ``berth.services.identity`` checks credentials with ``passwords``, mints
secrets with ``tokens``, expands roles with ``roles`` and attaches the catalog
from ``catalog``; ``berth.api.identity`` renders the results in Keystone's format.
"""

from berth.identity import catalog, models, passwords, roles, tokens

__all__ = ["catalog", "models", "passwords", "roles", "tokens"]
