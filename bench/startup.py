"""How long Berth's commands take to start, and what a standalone agent carries.

Each case runs ``--runs`` times in a fresh process, one after another, and reports
the median wall time and the child's peak resident memory (its own
``VmHWM``). The interpreter alone (``python -c pass``) is the floor; the stock
``zun`` and ``openstack`` clients' ``--version`` are what a user of the OpenStack
clients waits for the same nothing. ``agent module + control plane`` is what a
standalone ``berth-agent`` loaded before the control plane's import moved into the
commands that run it.

    .venv/bin/python bench/startup.py [--runs 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine

BIN = Path(sys.executable).parent
# The peak resident memory of this process image: VmHWM starts again at exec (ru_maxrss
# does not: it keeps the forking parent's peak).
_HWM = (
    "next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM'))"
)
_RSS = f"import sys\nprint({_HWM}, file=sys.stderr)"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", f"{code}\n{_RSS}"]


def _cli(path: Path, *args: str) -> list[str]:
    """Run a console script's Python under this interpreter, reporting its peak memory."""
    text = path.read_text()
    return [
        sys.executable,
        "-c",
        "import sys, atexit\n"
        f"sys.argv = {[str(path), *args]!r}\n"
        f"atexit.register(lambda: print({_HWM}, file=sys.stderr))\n"
        f"exec(compile({text!r}, {str(path)!r}, 'exec'), {{'__name__': '__main__'}})",
    ]


CASES: dict[str, list[str]] = {
    "python -c pass (the floor)": _python("pass"),
    "berth version": _cli(BIN / "berth", "version"),
    "berth --help": _cli(BIN / "berth", "--help"),
    "berth container ls --help": _cli(BIN / "berth", "container", "ls", "--help"),
    "agent module (berth-agent before it starts)": _python("import berth.cli.serve"),
    "agent module + control plane (berth-agent before)": _python(
        "import berth.cli.serve, berth.api.app"
    ),
    "zun --version (stock client)": _cli(BIN / "zun", "--version"),
    "openstack --version (stock client)": _cli(BIN / "openstack", "--version"),
}


def measure(command: list[str], runs: int) -> tuple[float, float]:
    """(median seconds, median peak RSS in MiB) of ``runs`` fresh processes."""
    walls, rss = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        walls.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{command[:3]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        rss.append(int(done.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(walls), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    floor = None
    results = []
    for name, command in CASES.items():
        wall, rss = measure(command, args.runs)
        floor = floor or wall
        results.append({"case": name, "p50_s": round(wall, 3), "rss_mib": round(rss, 1)})
        if not args.json:
            print(f"{name:55} {wall * 1000:7.0f} ms  {wall / floor:5.1f}x  {rss:6.1f} MiB")
    if args.json:
        print(json.dumps({"machine": machine(), "runs": args.runs, "results": results}, indent=2))


if __name__ == "__main__":
    main()
