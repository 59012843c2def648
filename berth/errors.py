"""The domain error tree. Only ``berth.api`` maps these to HTTP.

    BerthError                       code, user-facing message
    ├── Invalid                      bad input (400)
    │   ├── InvalidParamInVersion
    │   ├── NoInteractiveFlag
    │   ├── Base64Exception
    │   └── ImageNotFound
    ├── Unauthorized                 no or bad credentials (401)
    ├── Forbidden                    (403)
    │   ├── PolicyNotAuthorized
    │   └── OverQuota
    ├── NotFound                     (404): ContainerNotFound, ProjectNotFound, ...
    ├── NotAcceptable                microversion problems (406)
    ├── Conflict                     (409)
    │   └── InvalidStateException
    ├── UnsupportedMediaType         (415)
    ├── TooManyAttempts              throttled after failed logins (429, Retry-After)
    ├── HostUnavailable              the host of a resource does not answer (503)
    ├── Overloaded                   no database connection came free in time (503, Retry-After)
    ├── DatabaseUnavailable          the database cannot be reached (503, Retry-After)
    └── IdentityUnavailable          the external Keystone does not answer (503)

Each class's kebab-cased name is its Zun error code (``container.container-not-found``).
"""

from __future__ import annotations

import re

__all__ = [
    "Base64Exception",
    "BerthError",
    "CapsuleNotFound",
    "ClusterNotFound",
    "ClusterTemplateNotFound",
    "ClusterTemplateReferenced",
    "Conflict",
    "ContainerNotFound",
    "DatabaseUnavailable",
    "Forbidden",
    "HostNotFound",
    "HostUnavailable",
    "IdentityUnavailable",
    "ImageNotFound",
    "Invalid",
    "InvalidParamInVersion",
    "InvalidStateException",
    "NetworkNotFound",
    "NoInteractiveFlag",
    "NodeGroupNotFound",
    "NotAcceptable",
    "NotFound",
    "OverQuota",
    "Overloaded",
    "PolicyNotAuthorized",
    "QuotaNotFound",
    "RegistryNotFound",
    "ResourceNotFound",
    "SecurityGroupNotFound",
    "ServiceNotFound",
    "TooManyAttempts",
    "Unauthorized",
    "UnsupportedMediaType",
    "VolumeNotFound",
    "error_code",
]


class BerthError(Exception):
    """A failure a user can act on: it carries the message shown to them."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(BerthError):
    """The request is malformed or asks for something impossible."""


class InvalidParamInVersion(Invalid):
    """A parameter is newer than the requested microversion."""


class NoInteractiveFlag(Invalid):
    """Attach needs a container created with ``interactive``."""


class Base64Exception(Invalid):
    """Data that should be base64 (a tar from microversion 1.25) is not."""


class ImageNotFound(Invalid):
    """The image does not exist where it was looked for."""


class ClusterTemplateReferenced(Invalid):
    """A cluster still uses the template (Magnum refuses to delete or change it)."""


class Unauthorized(BerthError):
    """Credentials are missing, wrong or expired."""


class Forbidden(BerthError):
    """The caller is known but may not do this."""


class PolicyNotAuthorized(Forbidden):
    """A policy rule denied the action."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"Policy doesn't allow {rule} to be performed.")
        self.rule = rule


class OverQuota(Forbidden):
    """The request would exceed a project quota."""


class NotFound(BerthError):
    """The resource does not exist or is not visible to the caller."""


class ContainerNotFound(NotFound):
    pass


class HostNotFound(NotFound):
    pass


class ServiceNotFound(NotFound):
    pass


class ResourceNotFound(NotFound):
    pass


class RegistryNotFound(NotFound):
    pass


class NetworkNotFound(NotFound):
    pass


class SecurityGroupNotFound(NotFound):
    pass


class VolumeNotFound(NotFound):
    pass


class CapsuleNotFound(NotFound):
    pass


# Magnum's resources (the cluster API's services raise these).
class ClusterNotFound(NotFound):
    """No visible cluster has that UUID or name."""


class ClusterTemplateNotFound(NotFound):
    """No visible template has that UUID or name."""


class NodeGroupNotFound(NotFound):
    """No node group of the cluster has that UUID, name or id."""


class QuotaNotFound(NotFound):
    """No quota row for that project and resource."""


class NotAcceptable(BerthError):
    """The requested API version or representation cannot be served."""


class TooManyAttempts(BerthError):
    """Too many failed attempts lately: wait ``retry_after`` seconds before the next."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(BerthError):
    """The request conflicts with the resource's current state."""


class InvalidStateException(Conflict):
    """The action is not allowed in the resource's current status."""


class UnsupportedMediaType(BerthError):
    """The request body has the wrong content type."""


class HostUnavailable(BerthError):
    """The host that runs the resource cannot be reached right now."""


class Overloaded(BerthError):
    """The control plane is too busy to serve the request now; the caller may retry."""


class DatabaseUnavailable(BerthError):
    """The control plane's database cannot be reached right now (down, restarting,
    refusing connections); the caller may retry."""


class IdentityUnavailable(BerthError):
    """The identity service (an external Keystone) cannot check credentials right now."""


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def error_code(exc: BerthError) -> str:
    """Zun's error code suffix: the class's ``code`` if it has one, else its name in kebab case."""
    code = getattr(type(exc), "code", None)
    if isinstance(code, str):
        return code
    return _CAMEL.sub("-", type(exc).__name__).lower()
