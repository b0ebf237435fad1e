"""Shared by test_demo_sis.py and test_oneroster_proxy.py: one demo database per session.

Import the fixtures into a test module (``from tests.oneroster_support import demo_db``);
pytest then shares the session-scoped database between the modules.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gatekeeper.sis.data import DEFAULT_SEED, open_database

STUDENTS = 3000
SIS_TOKEN = "test-sis-token"
PREFIX = "/ims/oneroster/rostering/v1p2"
TOKENS = {
    "teacher": "demo-teacher-token",
    "principal": "demo-principal-token",
    "nurse": "demo-nurse-token",
    "busco": "demo-busco-token",
    "edinsight": "demo-edinsight-token",
    "tracklink": "demo-tracklink-token",
    "ice": "demo-ice-token",
}


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default demo district (3000 students, default seed), built once."""
    path = tmp_path_factory.mktemp("demo-sis") / "demo.sqlite"
    return open_database(path, students=STUDENTS, seed=DEFAULT_SEED)


def free_port() -> int:
    """A loopback port nobody listens on (for an upstream that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
