"""Everything a use case needs, built once per process and passed in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from berth import errors
from berth.config import Settings
from berth.domain.context import RequestContext
from berth.domain.policy import Credentials, Policy
from berth.events.notify import Notifier
from berth.identity.roles import effective_roles
from berth.scheduler import Pipeline, build_pipeline
from berth.services.hosts.agents import AgentCalls
from berth.services.hosts.cache import HostCache
from berth.services.secrets import SecretBox, open_box
from berth.store.db import Database

__all__ = ["Env", "build_env", "load_policy"]


@dataclass
class Env:
    settings: Settings
    db: Database
    notifier: Notifier
    policy: Policy
    agents: AgentCalls
    pipeline: Pipeline
    secrets: SecretBox
    # The scheduler's snapshot of the hosts, per process (see services/hosts/cache.py).
    host_cache: HostCache = field(default_factory=HostCache)

    def allowed(self, ctx: RequestContext, rule: str, project_id: str | None = None) -> bool:
        """Whether ``rule`` lets the caller act on a target owned by ``project_id``."""
        # Rules ask for the weakest role that suffices (role:reader to look), so they
        # must see implied roles too: a context built by hand (the cluster worker acts
        # as its owner with just "member") would otherwise fail a reader's rule.
        roles = frozenset(effective_roles(ctx.roles))
        creds = Credentials(ctx.user_id, ctx.project_id, roles)
        target = {"project_id": project_id or ctx.project_id or "", "user_id": ctx.user_id}
        return self.policy.allows(rule, creds, target)

    def enforce(self, ctx: RequestContext, rule: str, project_id: str | None = None) -> None:
        """Raise PolicyNotAuthorized unless ``rule`` allows the caller."""
        if not self.allowed(ctx, rule, project_id):
            raise errors.PolicyNotAuthorized(rule)


def load_policy(path: Path | None) -> Policy:
    """The default rules, overridden by a YAML or JSON policy file when given."""
    if path is None:
        return Policy()
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a policy file maps rule names to rule strings")
    return Policy({str(k): str(v) for k, v in data.items()})


def build_env(settings: Settings, db: Database, notifier: Notifier, agents: AgentCalls) -> Env:
    """Assemble the Env from settings (policy file, scheduler pipeline)."""
    pipeline = build_pipeline(
        cpu_ratio=settings.cpu_allocation_ratio,
        ram_ratio=settings.ram_allocation_ratio,
        disk_ratio=settings.disk_allocation_ratio,
        default_zone=settings.default_availability_zone,
        weigher=settings.weigher,
        tenant_exclusive=settings.tenant_exclusive_hosts,
        candidates=settings.scheduler_candidates,
    )
    policy = load_policy(settings.policy_file)
    env = Env(settings, db, notifier, policy, agents, pipeline, open_box(settings))
    env.host_cache = HostCache(
        settings.scheduler_snapshot_ttl, with_projects=settings.tenant_exclusive_hosts
    )
    notifier.watch_hosts(env.host_cache.forget)
    return env
