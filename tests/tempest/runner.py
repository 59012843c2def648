"""OpenStack's own API suites (tempest's Zun and Magnum plugins) against a throw-away Berth.

``python -m tests.tempest.runner [--subset ci] [--keep DIR]`` (or ``scripts/tempest``):

1. builds the tempest virtualenv (``/var/tmp/berth-tempest-venv`` or
   ``$BERTH_TEMPEST_VENV``, the ``TEMPEST_PINS``; reused while its marker names them),
2. builds ``berth-tempest/sleeper`` (the test busybox whose own command runs until
   stopped: the suite's "nginx" image),
3. starts a Berth all-in-one on a free port with its state in a temporary directory
   and Magnum's default cluster policy (``magnum-policy.yaml``); at the end removes what
   its agent left on the Docker engine,
4. writes ``tempest.conf`` from ``tempest.conf.in`` and runs the passes below,
5. compares every outcome with ``EXPECTED`` (the tests that do not pass here, each with
   why) and prints one line per test, then ``N passed, N failed, N skipped``.

It exits 1 when a test outside ``EXPECTED`` failed (Berth answers differently from
Zun or Magnum, or broke) or a test in it passed (the table is stale), else 0.
docs/compatibility.md "OpenStack's own test suites" has the versions, counts and reasons.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

import docker

from tests.functional.docker_engine import DOCKER_URL, remove_owned
from tests.keystone_server import build_venv
from tests.live import all_in_one_env, live_api
from tests.tempest.expected import EXPECTED

__all__ = ["TEMPEST_PINS", "Outcome", "Pass", "main", "passes", "run_suites", "tempest_venv"]

# The current releases (2026.2): tempest 47 and the plugins that test Zun 18 and Magnum 23.
TEMPEST_PINS = ("tempest==47.0.0", "zun-tempest-plugin==4.14.0", "magnum-tempest-plugin==2.12.0")
HERE = Path(__file__).resolve().parent
SLEEPER = "berth-tempest/sleeper:latest"
ADMIN_PASSWORD = "tempest-admin-pw"
ZUN = "zun_tempest_plugin.tests.tempest.api."
MAGNUM = "magnum_tempest_plugin.tests.api.v1."
# Zun's containers at 1.40 (Zun 18's maximum, what a current client sends) and again at
# 1.20 (TestContainer's minimum: the tests that end before 1.40 run there); the class of
# microversions 1.1-1.19 at 1.12.
ZUN_MAX = "1.40"
ZUN_MIN = "1.20"
ZUN_LEGACY = "1.12"
# A handful of each suite's tests that need no cluster, Magnum's also as RBAC personas:
# about 80 s (--subset ci).
CI_ZUN = (
    r"test_services\.TestService\.",
    r"test_containers\.TestContainer\.test_(create|delete|exec|kill|list|logs|rename|run|update)"
    r"_containers?\b",
)
CI_MAGNUM = (r"test_cluster_template\.", r"test_cluster_template_admin\.", r"test_magnum_service\.")


@dataclass(frozen=True)
class Pass:
    """One ``tempest run``: the tests ``regex`` selects, at Zun microversion ``zun_min``."""

    name: str
    regex: str
    zun_min: str = ZUN_MAX
    concurrency: int = 2
    rbac: bool = False  # Magnum's RBAC classes: enforce_scope on, a keypair name


@dataclass(frozen=True)
class Outcome:
    test: str  # module.Class.method, or "setUpClass (module.Class)"
    status: str  # ok, FAILED, SKIPPED
    reason: str = ""


def tempest_venv() -> Path:
    """The tempest virtualenv with ``TEMPEST_PINS``, built now if missing or outdated."""
    return build_venv(
        Path(os.environ.get("BERTH_TEMPEST_VENV", "/var/tmp/berth-tempest-venv")), TEMPEST_PINS
    )


def passes(subset: str, venv: Path) -> list[Pass]:
    """The runs of the full suites (``all``) or of the CI subset (``ci``)."""
    if subset == "ci":
        return [
            Pass("zun", f"^{re.escape(ZUN)}({'|'.join(CI_ZUN)})"),
            Pass("magnum", f"^{re.escape(MAGNUM)}({'|'.join(CI_MAGNUM)})"),
            Pass("magnum-rbac", f"^{re.escape(MAGNUM)}rbac\\.({'|'.join(CI_MAGNUM)})", rbac=True),
        ]
    legacy = re.escape(ZUN + "test_containers.TestContainerLegacy")
    current = re.escape(ZUN + "test_containers.TestContainer.")
    cluster = re.escape(MAGNUM + "test_cluster.ClusterTest")
    runs = [
        Pass("zun", f"^{re.escape(ZUN)}(?!test_containers\\.TestContainerLegacy)"),
        Pass("zun-1.20", f"^{current}", ZUN_MIN),
        Pass("zun-legacy", f"^{legacy}", ZUN_LEGACY),
        Pass("magnum", f"^{re.escape(MAGNUM)}(?!test_cluster\\.ClusterTest|rbac\\.)"),
        Pass("magnum-rbac", f"^{re.escape(MAGNUM)}rbac\\.", rbac=True),
    ]
    # The plugin's class credentials are dropped after the first test of a class
    # (BaseTempestTest.ic_method_list): each ClusterTest test gets its own process.
    runs += [
        Pass(f"magnum-cluster-{i}", f"^{re.escape(test)}\\b", concurrency=1)
        for i, test in enumerate(_listed(venv, f"^{cluster}"))
    ]
    return runs


def _listed(venv: Path, regex: str) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="berth-tempest-list-") as work:
        _stestr_conf(venv, Path(work))
        done = subprocess.run(
            [str(venv / "bin" / "tempest"), "run", "--list-tests", "--regex", regex],
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    return sorted({line.split("[")[0] for line in done.stdout.split() if line.startswith(MAGNUM)})


def _stestr_conf(venv: Path, work: Path) -> None:
    site = next((venv / "lib").glob("python3*/site-packages"))
    (work / ".stestr.conf").write_text(
        "[DEFAULT]\n"
        f"test_path={site / 'tempest' / 'test_discover'}\n"
        f"top_dir={site / 'tempest'}\n"
        "group_regex=([^\\.]*\\.)*\n"
    )
    stestr = [str(venv / "bin" / "stestr"), "init"]
    subprocess.run(stestr, cwd=work, capture_output=True, check=True, timeout=60)


def build_sleeper() -> str:
    """``berth-tempest/sleeper``: the test busybox with a command that runs until stopped."""
    dockerfile = 'FROM berth-test/busybox:latest\nCMD ["sleep", "2147483647"]\n'
    subprocess.run(
        ["docker", "build", "-q", "-t", SLEEPER, "-"],
        input=dockerfile,
        text=True,
        capture_output=True,
        check=True,
        timeout=300,
    )
    return SLEEPER


_RESULT = re.compile(
    r"^\{\d+\} (?P<test>setUpClass \([^)]*\)|\S+?)(?:\[[^\]]*\])?\s*(?:\[[\d.]+s\])?"
    r" \.\.\. (?P<status>ok|FAILED|SKIPPED)(?::\s*(?P<reason>.*))?$"
)


def parse(output: str) -> list[Outcome]:
    """The outcomes in ``tempest run``'s output (its ``{worker} test ... status`` lines)."""
    found = []
    for line in output.splitlines():
        m = _RESULT.match(line.strip())
        if m:
            found.append(Outcome(m["test"], m["status"], (m["reason"] or "").strip()))
    return found


def _run_pass(venv: Path, work: Path, conf: str, one: Pass) -> tuple[list[Outcome], str]:
    place = work / one.name
    place.mkdir()
    (place / "etc").mkdir()
    (place / "etc" / "tempest.conf").write_text(
        Template(conf).substitute(
            zun_min_microversion=one.zun_min,
            keypair_name="magnum-test" if one.rbac else "",
            enforce_scope=str(one.rbac).lower(),
        )
    )
    _stestr_conf(venv, place)
    command = [str(venv / "bin" / "tempest"), "run", "--regex", one.regex]
    command += ["--concurrency", str(one.concurrency)]
    done = subprocess.run(
        command,
        cwd=place,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("OS_", "BERTH_"))},
            "TEMPEST_CONFIG_DIR": str(place / "etc"),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    (place / "output.txt").write_text(done.stdout + done.stderr)
    return parse(done.stdout), done.stdout + done.stderr


def run_suites(subset: str, work: Path) -> Iterator[tuple[Pass, list[Outcome]]]:
    """Run the passes of ``subset`` against a fresh Berth keeping its state in ``work``."""
    venv = tempest_venv()
    sleeper = build_sleeper()
    runs = passes(subset, venv)
    host = f"tempest-{uuid.uuid4().hex[:8]}"
    env = all_in_one_env(
        work / "berth",
        host,
        ADMIN_PASSWORD,
        BERTH_POLICY_FILE=str(HERE / "magnum-policy.yaml"),
        BERTH_SANDBOX_IMAGE="berth-test/busybox:latest",
    )
    try:
        with live_api(env, workdir=work / "berth") as api:
            conf = Template((HERE / "tempest.conf.in").read_text()).safe_substitute(
                base_url=api.base_url,
                admin_password=ADMIN_PASSWORD,
                sleeper_image=sleeper,
                log_file=str(work / "tempest.log"),
            )
            for one in runs:
                outcomes, text = _run_pass(venv, work, conf, one)
                if not outcomes:
                    raise RuntimeError(f"tempest pass {one.name} ran no test:\n{text[-3000:]}")
                yield one, outcomes
    finally:
        # What the suite's tests left on the engine (containers, networks, firewall chains).
        remove_owned(docker.APIClient(base_url=DOCKER_URL, version="auto"), host)


def judge(outcomes: list[Outcome]) -> tuple[list[str], list[str]]:
    """(unexpected failures, unexpected passes) against ``EXPECTED``."""
    bad, stale = [], []
    for o in outcomes:
        known = EXPECTED.get(o.test)
        if o.status == "FAILED" and known is None:
            bad.append(o.test)
        elif o.status == "ok" and known is not None:
            stale.append(o.test)
    return bad, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", choices=("all", "ci"), default="all")
    parser.add_argument("--keep", type=Path, help="keep the state, logs and outputs here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="berth-tempest-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        everything: list[Outcome] = []
        for one, outcomes in run_suites(args.subset, work):
            for o in outcomes:
                why = o.reason or EXPECTED.get(o.test, "")
                print(f"{one.name:18} {o.status:7} {o.test}{'  -- ' + why if why else ''}")
            everything += outcomes
    bad, stale = judge(everything)
    for test in bad:
        print(f"UNEXPECTED FAILURE: {test}", file=sys.stderr)
    for test in stale:
        print(f"PASSES NOW (remove it from tests/tempest/expected.py): {test}", file=sys.stderr)
    count = {s: sum(o.status == s for o in everything) for s in ("ok", "FAILED", "SKIPPED")}
    print(f"tempest: {count['ok']} passed, {count['FAILED']} failed, {count['SKIPPED']} skipped")
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main())
