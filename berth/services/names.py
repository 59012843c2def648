"""Zun-style generated container names: ``<greek letter>-<1..24>-container``."""

from __future__ import annotations

import secrets

__all__ = ["generate_name"]

_GREEK = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
)


def generate_name(suffix: str = "container") -> str:
    return f"{secrets.choice(_GREEK)}-{secrets.randbelow(24) + 1}-{suffix}"
