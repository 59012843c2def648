"""The Docker driver's image verbs: ensure/pull (with registry credentials), remove, commit.

A mixin of ``DockerDriver``: it uses the driver's ``_engine`` (calls run in
the engine's thread pool). Credentials are handed to the engine per call
(``X-Registry-Auth``), never written to a Docker config file on the host.
"""

from __future__ import annotations

from typing import Any

import docker.errors
import requests

from berth import errors
from berth.domain.hostsync import RegistryAuth
from berth.images.refs import split_reference
from berth.runtimes.base import container_name
from berth.runtimes.images import ImageInfo, PullPolicyOps, refused_access

__all__ = ["DockerImageOps"]


def _auth_config(auth: RegistryAuth | None) -> dict[str, str] | None:
    if auth is None:
        return None
    return {"username": auth.username, "password": auth.password, "serveraddress": auth.registry}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc)


class DockerImageOps(PullPolicyOps):
    """Image operations over the driver's engine (see ``berth.runtimes.images``)."""

    _engine: Any

    async def remove_image(self, image: str) -> None:
        """Remove the image (its tag); absent is success; used by a container is Conflict."""
        try:
            await self._engine.raw(lambda api: api.remove_image(image))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise errors.Conflict(
                    f"image {image} is used by a container on this host: delete the container "
                    f"first ({_reason(exc)})"
                ) from exc
            raise errors.BerthError(f"docker engine error: {_reason(exc)}") from exc

    async def commit(
        self, uuid: str, reference: str, auth: RegistryAuth | None = None
    ) -> ImageInfo:
        """``docker commit`` (pausing the container meanwhile), then push ``reference``."""
        repository, tag = split_reference(reference)
        await self.commit_local(uuid, reference)
        digest = await self._push(repository, tag, auth)
        info = await self._describe(reference)
        info.digest = digest
        return info

    async def load_archive(self, path: str, reference: str) -> None:
        """``docker load`` the archive at ``path`` (streamed from the file) as ``reference``."""
        repository, tag = split_reference(reference)

        def load(api: Any) -> str:
            loaded = ""
            with open(path, "rb") as data:
                for line in api.load_image(data):
                    if isinstance(line, dict) and line.get("error"):
                        raise docker.errors.APIError(str(line["error"]))
                    text = str(line.get("stream", "")) if isinstance(line, dict) else ""
                    for prefix in ("Loaded image ID: ", "Loaded image: "):
                        if text.startswith(prefix) and not loaded:
                            loaded = text.removeprefix(prefix).strip()
            if not loaded:
                raise docker.errors.APIError("the archive holds no image")
            api.tag(loaded, repository, tag)
            return loaded

        try:
            await self._engine.raw(load)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise errors.Invalid(
                f"the Glance image's data is not a loadable docker save archive: {_reason(exc)}"
            ) from exc

    async def commit_local(self, uuid: str, reference: str) -> ImageInfo:
        """``docker commit`` (pausing the container meanwhile) as ``reference``, not pushed."""
        repository, tag = split_reference(reference)
        name = container_name(uuid)
        await self._engine.run(
            lambda api: api.commit(name, repository=repository, tag=tag, pause=True)
        )
        return await self._describe(reference)

    async def save_archive(self, reference: str, path: str, limit: int) -> int:
        """``docker save`` ``reference`` into the file ``path``, refusing more than ``limit``."""

        def save(api: Any) -> int:
            size = 0
            with open(path, "wb") as out:
                for chunk in api.get_image(reference):
                    size += len(chunk)
                    if size > limit:
                        raise errors.Invalid(
                            f"image {reference} is larger than {limit} bytes "
                            "(the setting glance_image_max_bytes)"
                        )
                    out.write(chunk)
            return size

        try:
            written: int = await self._engine.raw(save)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise errors.BerthError(f"docker save of {reference} failed: {_reason(exc)}") from exc
        return written

    async def _image_present(self, image: str) -> bool:
        try:
            await self._engine.raw(lambda api: api.inspect_image(image))
        except docker.errors.NotFound:
            return False
        return True

    async def _describe(self, image: str) -> ImageInfo:
        data: dict[str, Any] = await self._engine.run(lambda api: api.inspect_image(image))
        return ImageInfo(image_id=str(data.get("Id", "")), size=int(data.get("Size") or 0))

    async def _pull(self, image: str, auth: RegistryAuth | None) -> None:
        repository, tag = split_reference(image)
        config = _auth_config(auth)

        def pull(api: Any) -> None:
            # Streamed: some failures arrive as an "error" line inside a 200 answer.
            lines = api.pull(repository, tag=tag, stream=True, decode=True, auth_config=config)
            for line in lines:
                if isinstance(line, dict) and line.get("error"):
                    raise docker.errors.APIError(str(line["error"]))

        try:
            await self._engine.raw(pull)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            reason = _reason(exc)
            if refused_access(reason):
                hint = (
                    "the registry's credentials were refused: fix the registry's username and "
                    "password (openstack appcontainer registry update)"
                    if auth
                    else "the registry wants credentials: create a registry with them "
                    "(openstack appcontainer registry create) and name it with --registry"
                )
                raise errors.ImageNotFound(
                    f"image {image!r} could not be pulled: {hint} (pull failed: {reason})"
                ) from exc
            raise errors.ImageNotFound(
                f"image {image!r} not found: check the name or the registry (pull failed: {reason})"
            ) from exc

    async def _push(self, repository: str, tag: str, auth: RegistryAuth | None) -> str | None:
        config = _auth_config(auth)

        def push(api: Any) -> str | None:
            digest = None
            for line in api.push(repository, tag=tag, stream=True, decode=True, auth_config=config):
                if isinstance(line, dict) and line.get("error"):
                    raise docker.errors.APIError(str(line["error"]))
                aux = line.get("aux") if isinstance(line, dict) else None
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
            return digest

        try:
            result: str | None = await self._engine.raw(push)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise errors.HostUnavailable(
                f"pushing {repository}:{tag} to the image store failed: {_reason(exc)}"
            ) from exc
        return result
