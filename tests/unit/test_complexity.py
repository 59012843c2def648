"""No function in berth/ above cyclomatic complexity 20 (radon), generated migrations aside.

A function past 20 is split along its own steps (named helpers, tables as data).
Closures and methods count as functions of their own, as radon scores them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from radon.complexity import add_inner_blocks, cc_visit
from radon.visitors import Function

import berth

LIMIT = 20
_PACKAGE = Path(berth.__file__).resolve().parent
_SKIPPED = (_PACKAGE / "store" / "migrations",)  # Alembic's, generated

def _scores() -> Iterator[tuple[str, str, int, int]]:
    """``(path, function, line, complexity)`` of every function, method and closure."""
    for path in sorted(_PACKAGE.rglob("*.py")):
        if any(path.is_relative_to(skipped) for skipped in _SKIPPED):
            continue
        where = path.relative_to(_PACKAGE.parent).as_posix()
        for block in add_inner_blocks(cc_visit(path.read_text(encoding="utf-8"))):
            if isinstance(block, Function):
                yield where, block.fullname, block.lineno, block.complexity


def test_no_function_is_too_complex() -> None:
    scores = list(_scores())
    assert len(scores) > 1000, "the scan found too few functions: is the path right?"
    too_complex = sorted(
        f"{name} {where}:{line} complexity {score}"
        for where, name, line, score in scores
        if score > LIMIT
    )
    assert not too_complex, f"over complexity {LIMIT}, split them:\n" + "\n".join(too_complex)
