"""The ``opa`` binary: finding it, running it, and a real ``opa run --server`` on loopback.

    >>> from pathlib import Path
    >>> from gatekeeper.policy.opa_process import OpaProcess, find_opa
    >>> with OpaProcess(Path("policies")) as opa:            # doctest: +SKIP
    ...     opa.url                                           # 'http://127.0.0.1:41234'

:func:`find_opa` looks for ``$GATEKEEPER_OPA``, then ``.tools/bin/opa`` in the
current directory and in the checkout gatekeeper runs from (what
``scripts/build-opa`` builds), then ``opa`` on ``PATH``. :class:`OpaProcess`
starts a server serving a bundle directory on 127.0.0.1 and a free port,
waits for ``GET /health``, and stops it (SIGTERM, then SIGKILL) when the
``with`` block ends. :func:`run_opa` runs one ``opa`` subcommand with a
timeout. Every failure is an :class:`OpaProcessError` (a ``PolicyError``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from gatekeeper.errors import PolicyError

__all__ = [
    "LOOPBACK",
    "OpaProcess",
    "OpaProcessError",
    "find_opa",
    "free_port",
    "require_opa",
    "run_opa",
]

LOOPBACK = "127.0.0.1"
_CHECKOUT = Path(__file__).resolve().parents[2]


class OpaProcessError(PolicyError):
    """The opa binary is missing, failed to start, or timed out."""

    reason = "opa_unavailable"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_opa(*, search_path: bool = True) -> Path | None:
    """The opa binary: ``$GATEKEEPER_OPA``, ``./.tools/bin/opa``, ``<checkout>/.tools/bin/opa``,
    then (``search_path``) ``opa`` on PATH; None if none is executable.

    ``$GATEKEEPER_OPA``, when set, is the only candidate.
    """
    configured = os.environ.get("GATEKEEPER_OPA")
    if configured:
        candidate = Path(configured)
        return candidate if _executable(candidate) else None
    for candidate in (Path.cwd() / ".tools" / "bin" / "opa", _CHECKOUT / ".tools" / "bin" / "opa"):
        if _executable(candidate):
            return candidate
    if search_path:
        found = shutil.which("opa")
        if found:
            return Path(found)
    return None


def require_opa(opa_bin: str | Path | None = None) -> Path:
    """``opa_bin`` if given, else :func:`find_opa`; OpaProcessError when there is none."""
    found = Path(opa_bin) if opa_bin is not None else find_opa()
    if found is None or not _executable(found):
        raise OpaProcessError(
            "no opa binary: set GATEKEEPER_OPA, run scripts/build-opa (.tools/bin/opa), "
            "or put opa on PATH"
        )
    return found


def run_opa(
    opa_bin: Path, *args: str, timeout: float = 300.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``opa <args>`` and return the completed process (any exit status)."""
    try:
        return subprocess.run(
            [str(opa_bin), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise OpaProcessError(f"opa {args[0]} did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise OpaProcessError(f"cannot run {opa_bin}: {exc.strerror}") from exc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


class OpaProcess:
    """A real OPA server process serving ``bundle_dir`` on 127.0.0.1:<free port>."""

    def __init__(
        self,
        bundle_dir: str | Path,
        *,
        opa_bin: str | Path | None = None,
        startup_timeout: float = 15.0,
        port: int | None = None,
    ) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.opa_bin = require_opa(opa_bin)
        self.startup_timeout = startup_timeout
        #: The port to listen on (a restart on the same port); None: a free one.
        self._fixed_port = port
        self.port: int | None = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise OpaProcessError("the OPA server is not started")
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        if self._proc is not None:
            return
        if not self.bundle_dir.is_dir():
            raise OpaProcessError(f"bundle directory not found: {self.bundle_dir}")
        # The port can be taken between free_port() and OPA's bind: retry then.
        for _ in range(3):
            try:
                self._start_once()
                return
            except OpaProcessError as exc:
                if "address already in use" not in str(exc):
                    raise
        raise OpaProcessError("OPA could not bind a free port after 3 attempts")

    def _start_once(self) -> None:
        self.port = self._fixed_port if self._fixed_port is not None else free_port()
        self._log = tempfile.TemporaryFile()  # closed in stop()
        cmd = [
            str(self.opa_bin), "run", "--server",
            "--addr", f"{LOOPBACK}:{self.port}",
            "--log-level", "error",
            "--skip-version-check",
            "--shutdown-grace-period", "1",
            "--bundle", str(self.bundle_dir),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                output = self._output()
                self.stop()
                raise OpaProcessError(
                    f"OPA exited with status {status} before becoming healthy; "
                    f"command: {' '.join(cmd)}\n{output}"
                )
            if self._healthy():
                return
            time.sleep(0.05)
        output = self._output()
        self.stop()
        raise OpaProcessError(
            f"OPA did not answer GET /health within {self.startup_timeout:.0f} s; "
            f"command: {' '.join(cmd)}\n{output}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace").strip()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def query(self, path: str, input_: object) -> object:
        """POST ``{"input": input_}`` to ``/v1/data/<path>``; the parsed JSON reply."""
        body = json.dumps({"input": input_}).encode()
        req = urllib.request.Request(  # noqa: S310 - loopback http URL built here
            f"{self.url}/v1/data/{path.strip('/')}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
