"""Every runnable example in docs/adapters.md runs; the adapters' public surface is tidy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "adapters.md"
EXAMPLES = [
    block
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    if '__name__ == "__main__"' in block
]


def test_the_page_has_one_example_per_adapter() -> None:
    assert len(EXAMPLES) == len(NAMES)


NAMES = ["starlette", "fastapi", "wsgi", "flask", "django", "sqlalchemy"]


@pytest.mark.parametrize("example", EXAMPLES, ids=NAMES[: len(EXAMPLES)])
def test_example_runs(example: str, tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(example)
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'math': 'A'" in done.stdout or "'math_grade': 'A'" in done.stdout, done.stdout
    assert "1 Main St" not in done.stdout


@pytest.mark.parametrize(
    "module",
    [
        "gatekeeper.source",
        "gatekeeper.adapters._common",
        "gatekeeper.adapters.asgi",
        "gatekeeper.adapters.fastapi",
        "gatekeeper.adapters.wsgi",
        "gatekeeper.adapters.flask",
        "gatekeeper.adapters.django",
        "gatekeeper.adapters.sqlalchemy",
    ],
)
def test_all_is_sorted_and_complete(module: str) -> None:
    mod = __import__(module, fromlist=["__all__"])

    def key(name: str) -> tuple[int, str]:  # ruff's RUF022 order, as in test_api
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(mod.__all__) == sorted(mod.__all__, key=key)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"
