"""Shared fixtures: the OPA binary and a real OPA server on the repo's policies/.

Without OPA the OPA tests skip, unless ``CI=true`` or ``GATEKEEPER_REQUIRE_ALL=1``,
where they fail: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import settings

# Property tests are judged on what they find, not on wall time: Hypothesis's
# default 200 ms deadline per example turns a scheduler stall on a loaded
# 2-core CI machine into a DeadlineExceeded/Flaky failure. Tests keep their own
# max_examples and health checks on top of this profile.
settings.register_profile("gatekeeper", deadline=None)
settings.load_profile("gatekeeper")

# The tests replay the public cases and the examples, dated 2026-04-02 with the
# dates of their documents: a live gatekeeper refuses an as_of that far from
# its clock (max_as_of_skew, 300 s by default). Replaying past scenarios is
# what "off" is for; the default has tests of its own (test_api.py), which
# take this variable away. Subprocesses inherit it.
os.environ.setdefault("GATEKEEPER_MAX_AS_OF_SKEW", "off")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.opa_server import OpaServer, find_opa  # noqa: E402

POLICIES_DIR = REPO_ROOT / "policies"


def copy_pack(directory: Path, name: str = "policies") -> Path:
    """A copy of policies/ without its tests, as ``directory/name``, to edit."""
    target = directory / name
    shutil.copytree(POLICIES_DIR, target, ignore=shutil.ignore_patterns("*_test.rego"))
    return target


def uncompilable_pack(directory: Path) -> Path:
    """A copy of policies/ with facts.rego copied beside itself: every default
    rule twice, which rego-cpp cannot compile."""
    target = copy_pack(directory)
    facts = target / "gatekeeper" / "facts.rego"
    (target / "gatekeeper" / "facts_copy.rego").write_text(facts.read_text())
    return target


def require_all() -> bool:
    """True when nothing may be skipped (CI, or GATEKEEPER_REQUIRE_ALL=1)."""
    ci = os.environ.get("CI", "").lower()
    return os.environ.get("GATEKEEPER_REQUIRE_ALL") == "1" or ci in {"true", "1"}


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test, or fail it when nothing may be skipped."""
    if require_all():
        pytest.fail(f"{reason} (CI=true / GATEKEEPER_REQUIRE_ALL=1: not skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def opa_bin() -> Path:
    found = find_opa()
    if found is None:
        skip_or_fail(
            "no OPA binary: run scripts/build-opa (builds .tools/bin/opa) or set GATEKEEPER_OPA"
        )
    return found


@pytest.fixture(scope="session")
def opa_server(opa_bin: Path) -> Iterator[OpaServer]:
    """A real OPA server serving policies/ as a bundle (one for the session)."""
    with OpaServer(POLICIES_DIR, opa_bin=opa_bin) as server:
        yield server


@pytest.fixture(scope="session")
def wasm_engine(opa_bin: Path) -> Iterator[Any]:
    """The wasm engine (policies/ compiled by the real opa binary, run by wasmtime)."""
    try:
        import wasmtime  # noqa: F401
    except ImportError:
        skip_or_fail("wasmtime is not installed: pip install -e '.[dev]'")
    from gatekeeper.engines import WasmEngine, load_pack

    engine = WasmEngine(load_pack(POLICIES_DIR), opa_bin=opa_bin, timeout=5.0)
    yield engine
    engine.close()


# --------------------------------------------------------------------- PostgreSQL

import uuid  # noqa: E402

from tests.pg_server import PostgresServer, find_pg_bin  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 in a temp dir (one for the session)."""
    pg_bin = find_pg_bin()
    if pg_bin is None:
        skip_or_fail(
            "no PostgreSQL binaries: run scripts/ensure-postgres or set GATEKEEPER_PG_BIN "
            "(a dir holding initdb, pg_ctl and postgres)"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed: pip install -e '.[dev]'")
    with PostgresServer(pg_bin=pg_bin) as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> str:
    """The DSN of a fresh, empty database on the session's PostgreSQL server."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:16]}")
