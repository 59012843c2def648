"""Request bodies of the identity API: read and checked here, handed on as plain values.

Bodies are read by hand (``read_body``) so that malformed JSON is a Keystone
400, never FastAPI's 422. Models use strict types, as Keystone's JSON schemas do.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
)

from berth import errors
from berth.api.bounds import check_text, parse_json
from berth.domain.text import one_line, prose
from berth.identity.models import (
    AuthRequest,
    PasswordCredentials,
    ProjectSpec,
    ProjectUpdate,
    RoleSpec,
    ScopeRequest,
    UserSpec,
    UserUpdate,
)

__all__ = [
    "MAX_TAGS",
    "AuthBody",
    "PasswordChange",
    "ProjectCreate",
    "ProjectPatch",
    "RoleCreate",
    "UserCreate",
    "UserPatch",
    "parse",
    "read_body",
]

_M = TypeVar("_M", bound=BaseModel)


_Line = AfterValidator(one_line)
Name64 = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64), _Line]
Name255 = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=255), _Line]
Line255 = Annotated[str, StringConstraints(strict=True, max_length=255), _Line]
Text255 = Annotated[str, StringConstraints(strict=True, max_length=255), AfterValidator(prose)]
Id64 = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64), _Line]
# Keystone takes any characters in a password; NUL is refused by read_body.
Secret = Annotated[str, StringConstraints(strict=True, max_length=4096)]
# Keystone's project tags: at most 80, each 1-255 characters without '/' or ','.
Tag = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=255, pattern=r"^[^,/]*$"), _Line
]
MAX_TAGS = 80
# Keys a client may echo back in a body that are not free-form extra attributes.
_RESERVED = frozenset({"id", "links", "domain_id", "is_domain", "parent_id"})


async def read_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; ``Invalid`` (400) for anything else."""
    raw = await request.body()
    try:
        data = parse_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid("The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    check_text(data)  # names, passwords, descriptions: no NUL, no lone surrogate
    return data


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"Invalid input for field '{loc}': {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "Invalid input."


def parse(model: type[_M], data: dict[str, Any], key: str) -> _M:
    """``data[key]`` validated as ``model``; ``Invalid`` (400) with Keystone's wording if not."""
    inner = data.get(key)
    if not isinstance(inner, dict):
        raise errors.Invalid(f"Expecting to find {key} in request body.")
    try:
        return model.model_validate(inner)
    except ValidationError as exc:
        raise errors.Invalid(_describe(exc)) from exc


def _extra(model: BaseModel, **known: Any) -> dict[str, Any]:
    """Free-form attributes: unknown keys plus the given known ones that were set."""
    extra = {k: v for k, v in (model.model_extra or {}).items() if k not in _RESERVED}
    extra.update({k: v for k, v in known.items() if v is not None})
    return extra


# -- auth --------------------------------------------------------------------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _DomainRef(_Loose):
    id: Id64 | None = None
    name: Name64 | None = None


class _UserRef(_Loose):
    id: Id64 | None = None
    name: Name255 | None = None
    domain: _DomainRef | None = None
    password: Secret


class _PasswordMethod(_Loose):
    user: _UserRef


class _TokenMethod(_Loose):
    id: Annotated[str, StringConstraints(strict=True, min_length=1)]


class _Identity(_Loose):
    methods: list[Annotated[str, StringConstraints(strict=True)]] = Field(min_length=1)
    password: _PasswordMethod | None = None
    token: _TokenMethod | None = None


class _ProjectScope(_Loose):
    id: Id64 | None = None
    name: Name64 | None = None
    domain: _DomainRef | None = None


class _Scope(_Loose):
    project: _ProjectScope | None = None
    domain: _DomainRef | None = None
    system: dict[str, Any] | None = None
    trust: dict[str, Any] | None = Field(default=None, alias="OS-TRUST:trust")


class AuthBody(_Loose):
    """``{"auth": {"identity": ..., "scope": ...}}`` as keystoneauth sends it."""

    identity: _Identity
    scope: _Scope | Literal["unscoped"] | None = None

    def to_request(self) -> AuthRequest:
        """The plain auth request; ``Invalid`` if a method lacks its section or a name a domain."""
        ident = self.identity
        for method in ident.methods:
            if method in ("password", "token") and getattr(ident, method) is None:
                raise errors.Invalid(f"Expecting to find {method} in identity.")
        password = _password(ident.password) if ident.password else None
        token = ident.token.id if ident.token else None
        return AuthRequest(tuple(ident.methods), password, token, _scope(self.scope))


def _password(method: _PasswordMethod) -> PasswordCredentials:
    user = method.user
    if user.id is None and user.name is None:
        raise errors.Invalid("Expecting to find id or name in user.")
    if user.id is None and (user.domain is None or (user.domain.id or user.domain.name) is None):
        raise errors.Invalid("Expecting to find domain in user.")
    domain = user.domain or _DomainRef()
    return PasswordCredentials(user.password, user.id, user.name, domain.id, domain.name)


def _scope(scope: _Scope | Literal["unscoped"] | None) -> ScopeRequest:
    if scope is None:
        return ScopeRequest("default")
    if scope == "unscoped":
        return ScopeRequest("unscoped")
    if scope.system is not None or scope.trust is not None:
        raise errors.Unauthorized("Only project and domain scopes are supported.")
    if scope.project is not None:
        return _project_scope(scope.project)
    if scope.domain is not None:
        if scope.domain.id is None and scope.domain.name is None:
            raise errors.Invalid("Expecting to find id or name in domain.")
        return ScopeRequest("domain", scope.domain.id, scope.domain.name)
    return ScopeRequest("default")


def _project_scope(project: _ProjectScope) -> ScopeRequest:
    if project.id is not None:
        return ScopeRequest("project", id=project.id)
    if project.name is None:
        raise errors.Invalid("Expecting to find id or name in project.")
    domain = project.domain
    if domain is None or (domain.id is None and domain.name is None):
        raise errors.Invalid("Expecting to find domain in project.")
    return ScopeRequest("project", None, project.name, domain.id, domain.name)


# -- projects ----------------------------------------------------------------


class _Resource(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProjectCreate(_Resource):
    name: Name64
    domain_id: Id64 = "default"
    description: Text255 | None = None
    enabled: StrictBool = True
    is_domain: StrictBool = False
    parent_id: Id64 | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    options: dict[str, Any] | None = None

    def to_spec(self) -> ProjectSpec:
        """The plain spec; ``Invalid`` for what Berth does not model (hierarchies, domains)."""
        if self.is_domain:
            raise errors.Invalid("Projects acting as domains are not supported.")
        if self.parent_id not in (None, self.domain_id):
            raise errors.Invalid("Project hierarchies are not supported.")
        extra = _extra(self, tags=self.tags, options=self.options)
        return ProjectSpec(self.name, self.domain_id, self.description or "", self.enabled, extra)


class ProjectPatch(_Resource):
    name: Name64 | None = None
    domain_id: Id64 | None = None
    description: Text255 | None = None
    enabled: StrictBool | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    options: dict[str, Any] | None = None

    def to_update(self) -> ProjectUpdate:
        """The plain change set."""
        extra = _extra(self, tags=self.tags, options=self.options)
        return ProjectUpdate(self.name, self.description, self.enabled, extra, self.domain_id)


# -- users -------------------------------------------------------------------


class UserCreate(_Resource):
    name: Name255
    domain_id: Id64 = "default"
    password: Secret | None = None
    email: Line255 | None = None
    description: Text255 | None = None
    enabled: StrictBool = True
    default_project_id: Id64 | None = None
    options: dict[str, Any] | None = None

    def to_spec(self) -> UserSpec:
        """The plain spec."""
        return UserSpec(
            self.name,
            self.domain_id,
            self.password,
            self.email,
            self.description or "",
            self.enabled,
            self.default_project_id,
            _extra(self, options=self.options),
        )


class UserPatch(_Resource):
    name: Name255 | None = None
    domain_id: Id64 | None = None
    password: Secret | None = None
    email: Line255 | None = None
    description: Text255 | None = None
    enabled: StrictBool | None = None
    default_project_id: Id64 | None = None
    options: dict[str, Any] | None = None

    def to_update(self) -> UserUpdate:
        """The plain change set."""
        return UserUpdate(
            self.name,
            self.password,
            self.email,
            self.description,
            self.enabled,
            self.default_project_id,
            _extra(self, options=self.options),
            self.domain_id,
        )


class PasswordChange(_Loose):
    password: Secret
    original_password: Secret


# -- roles -------------------------------------------------------------------


class RoleCreate(_Loose):
    name: Name255
    description: Text255 | None = None
    domain_id: Id64 | None = None

    def to_spec(self) -> RoleSpec:
        """The plain spec."""
        return RoleSpec(self.name, self.description or "", self.domain_id)
