"""The multi-worker API's start-up rules (its behaviour: tests/functional/test_api_workers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.cli.serve_workers import lease_name, serve_workers
from berth.config import Settings
from berth.store.lease import lease_key


def test_sqlite_refuses_more_than_one_worker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_workers=2)
    with pytest.raises(SystemExit, match="api_workers = 2 needs PostgreSQL"):
        serve_workers(settings)
    assert not (tmp_path / "berth.db").exists()  # refused before anything was made


def test_each_all_in_one_host_has_its_own_lease(tmp_path: Path) -> None:
    def name(**kw: object) -> str:
        return lease_name(Settings(data_dir=tmp_path, **kw))  # type: ignore[arg-type]

    assert name(all_in_one=True, agent_host="a") != name(all_in_one=True, agent_host="b")
    assert name(all_in_one=False, agent_host="a") == name(all_in_one=False, agent_host="b")
    assert lease_key("x") == lease_key("x") != lease_key("y")
    assert -(2**63) <= lease_key("x") < 2**63
