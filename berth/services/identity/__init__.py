"""Identity use cases: bootstrap, authentication, token validation and identity management.

Policy follows Keystone's defaults: managing projects, users, roles and
assignments needs the admin role (``admin_required``); any user may read its
own record, list its own projects and inspect or revoke its own tokens.

Modules: ``seed`` (first start), ``auth`` (tokens), ``throttle`` (backoff on
failed passwords), ``projects`` (and domains), ``users``, ``roles`` (and
grants, assignments). Callers import from
here: ``from berth.services import identity; await identity.validate_token(db, t)``.
"""

from berth.services.identity._common import (
    AUTH_REQUIRED,
    DEFAULT_DOMAIN_ID,
    DEFAULT_DOMAIN_NAME,
    NO_PROJECT,
)
from berth.services.identity.auth import (
    EXTRA_CATALOG_SERVICES,
    authenticate,
    prune_tokens,
    revoke_token,
    token_catalog,
    token_info,
    validate_token,
)
from berth.services.identity.projects import (
    create_domain,
    create_project,
    delete_project,
    get_domain,
    get_project,
    list_auth_domains,
    list_auth_projects,
    list_domains,
    list_projects,
    list_user_projects,
    update_project,
)
from berth.services.identity.roles import (
    check_grant,
    create_role,
    delete_role,
    get_role,
    grant_role,
    list_assignments,
    list_grants,
    list_roles,
    revoke_grant,
)
from berth.services.identity.seed import AGENT_USERNAME, SERVICE_PROJECT, agent_secret, bootstrap
from berth.services.identity.throttle import LoginThrottle, login_throttle, source_address
from berth.services.identity.users import (
    change_own_password,
    create_user,
    delete_user,
    get_user,
    list_users,
    update_user,
)

__all__ = [
    "AGENT_USERNAME",
    "AUTH_REQUIRED",
    "DEFAULT_DOMAIN_ID",
    "DEFAULT_DOMAIN_NAME",
    "EXTRA_CATALOG_SERVICES",
    "NO_PROJECT",
    "SERVICE_PROJECT",
    "LoginThrottle",
    "agent_secret",
    "authenticate",
    "bootstrap",
    "change_own_password",
    "check_grant",
    "create_domain",
    "create_project",
    "create_role",
    "create_user",
    "delete_project",
    "delete_role",
    "delete_user",
    "get_domain",
    "get_project",
    "get_role",
    "get_user",
    "grant_role",
    "list_assignments",
    "list_auth_domains",
    "list_auth_projects",
    "list_domains",
    "list_grants",
    "list_projects",
    "list_roles",
    "list_user_projects",
    "list_users",
    "login_throttle",
    "prune_tokens",
    "revoke_grant",
    "revoke_token",
    "source_address",
    "token_catalog",
    "token_info",
    "update_project",
    "update_user",
    "validate_token",
]
