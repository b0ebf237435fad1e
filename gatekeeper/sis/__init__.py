"""A demo student-information system: OneRoster 1.2 over synthetic students.

    gatekeeper demo-sis --port 8600 --students 3000

or, from Python (``pip install 'gatekeeper[proxy]'``)::

    from gatekeeper.sis import start_demo_sis
    sis = start_demo_sis(students=3000, token="demo-sis-token")
    ...                                   # sis.url, sis.base_url, sis.stats.count
    sis.stop()

``gatekeeper.sis.data`` generates the records (deterministic from a seed) and
needs nothing beyond the standard library; ``gatekeeper.sis.demo`` serves
them (Starlette, uvicorn) and is imported on first use of the names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatekeeper.sis.data import DEFAULT_SEED, DEFAULT_STUDENTS, DemoDataset, generate

if TYPE_CHECKING:
    from gatekeeper.sis.demo import DemoSIS, DemoSISHandle, run_demo_sis, start_demo_sis

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_STUDENTS",
    "DemoDataset",
    "DemoSIS",
    "DemoSISHandle",
    "generate",
    "run_demo_sis",
    "start_demo_sis",
]

_LAZY = frozenset({"DemoSIS", "DemoSISHandle", "run_demo_sis", "start_demo_sis"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from gatekeeper.sis import demo

        return getattr(demo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
