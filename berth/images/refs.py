"""Image references: split, qualify with a registry, and name the image store's images.

Pure string work, no I/O: ``repo[:tag]``, ``host[:port]/path[:tag]``,
``name@sha256:...`` as Docker reads them.
"""

from __future__ import annotations

import re

__all__ = [
    "PUBLIC_NAMESPACE",
    "is_loopback",
    "registry_of",
    "split_reference",
    "store_reference",
    "valid_repository",
    "with_registry",
]

PUBLIC_NAMESPACE = "public"
_REPO_PART = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def split_reference(image: str) -> tuple[str, str]:
    """(repository, tag) of ``image``; the tag defaults to ``latest``; a digest stays whole.

    ``127.0.0.1:5000/a/b`` has no tag (the colon belongs to the host);
    ``a/b@sha256:...`` keeps the digest as its "tag" after the ``@``;
    ``busybox:`` is ``latest``, as the engine's pull (and docker-py's) reads
    it. The agent's Docker runtime splits with this same function.
    """
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :] or "latest"
    return image, "latest"


def registry_of(repository: str) -> str | None:
    """The registry host named by ``repository``'s first part, or None (Docker Hub).

    Docker's rule: the first component is a registry when it holds a dot or a
    colon, or is ``localhost``.
    """
    first, sep, _ = repository.partition("/")
    if not sep:
        return None
    if "." in first or ":" in first or first == "localhost":
        return first
    return None


def with_registry(image: str, domain: str) -> str:
    """``image`` pulled from ``domain``: prefixed with it unless it already names it."""
    domain = domain.strip().rstrip("/")
    for scheme in ("https://", "http://"):
        domain = domain.removeprefix(scheme)
    if image.startswith(domain + "/"):
        return image
    return f"{domain}/{image}"


def store_reference(store: str, namespace: str, repo: str, tag: str) -> str:
    """Where the image store keeps ``repo:tag`` of ``namespace`` (a project id or ``public``)."""
    return f"{store}/{namespace}/{repo}:{tag}"


def valid_repository(repo: str) -> bool:
    """Whether ``repo`` is a valid repository path (lower-case parts joined by ``/``)."""
    return bool(repo) and len(repo) <= 200 and all(_REPO_PART.match(p) for p in repo.split("/"))


def is_loopback(address: str) -> bool:
    """Whether ``host[:port]`` is on this machine (Docker pulls from those over plain HTTP)."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    host = host.strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")
