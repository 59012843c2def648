"""One create's wake-up of its agent while many other agents long-poll the same API process.

Every create ``touch``es its host in ``berth.events.notify.Notifier``; the
agent of that host waits in a long poll (``Notifier.wait``), and so do the
agents of every other host that process serves. This measures, in one
process without a database: ``--agents`` waiting polls of other hosts, then
``--touches`` times a poll of host ``x`` and a touch of ``x``, the time until
that poll answers and the process's CPU per touch (medians).

    .venv/bin/python bench/notifier_wake.py [--agents 1000] [--touches 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from berth.events.notify import Notifier


async def measure(agents: int, touches: int) -> tuple[float, float]:
    """(wake-up, CPU) medians in seconds."""
    notifier = Notifier()
    others = [
        asyncio.create_task(notifier.wait(f"h{i}", notifier.generation(f"h{i}"), 3600))
        for i in range(agents)
    ]
    await asyncio.sleep(0.05)
    woken, cpu = [], []
    for _ in range(touches):
        poll = asyncio.create_task(notifier.wait("x", notifier.generation("x"), 60))
        await asyncio.sleep(0.001)
        c0, t0 = time.process_time(), time.perf_counter()
        await notifier.touch("x")
        await poll
        woken.append(time.perf_counter() - t0)
        await asyncio.sleep(0.005)  # whatever the touch set off settles
        cpu.append(time.process_time() - c0)
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    return statistics.median(woken), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=1000, help="other hosts' agents polling")
    ap.add_argument("--touches", type=int, default=50)
    args = ap.parse_args()
    woken, cpu = asyncio.run(measure(args.agents, args.touches))
    print(
        f"{args.agents} other agents polling: the touched host's poll answers after "
        f"{woken * 1000:.3f} ms (median); CPU per touch {cpu * 1000:.3f} ms "
        "(includes the 5 ms pause's loop passes)"
    )


if __name__ == "__main__":
    main()
