"""Shadow mode: a candidate pack evaluated beside the live one, never deciding.

    >>> from gatekeeper.engines import EmbeddedEngine, load_pack
    >>> from gatekeeper.engines.shadow import ShadowEngine
    >>> engine = ShadowEngine(EmbeddedEngine(load_pack("policies")),
    ...                       EmbeddedEngine(load_pack("policies-next")))   # doctest: +SKIP
    >>> gk = Gatekeeper(engine=engine, audit=log)                          # doctest: +SKIP

or, from configuration, ``shadow_policy_dir = "/etc/gatekeeper/policies-next"``.

:meth:`ShadowEngine.evaluate` returns exactly what the live engine returns
(or raises what it raises); the candidate never sees a live error and can
never change, delay or fail a live decision. After the live result is in
hand, the input and that result go onto a bounded queue (``max_pending``,
default 256; ``put_nowait``: when the queue is full the comparison is
dropped and counted, never waited for). One worker thread takes them off,
has the candidate evaluate the input, and compares ``decision``, ``rules``,
``obligations`` and ``allowed_fields``. A difference is one ``warning`` line
on the operational log (``gatekeeper.shadow``, structlog JSON) naming the
request id, both revisions, which keys changed, both decisions, both rule
lists, both obligation lists and the number of allowed fields: codes and
ids only, never field names or any value of the request or the record.
The Gatekeeper assigns ``decision_id`` after the engine returns, so the
line carries the caller's ``request_id`` (also in the audit entry).

Where the candidate runs (``isolation``):

- ``"process"`` (default): in a child Python process
  (``python -m gatekeeper.engines._shadow_worker``), fed one JSON line per
  input through a pipe by the worker thread. A candidate evaluating in this
  process competes with the live decisions for the cores and for the
  interpreter's lock in its Python parts (measured here: a busy candidate
  thread doubled the live decision's median latency, 4.7 → 9.2 ms;
  rego-cpp itself runs without the GIL), so only a separate process
  keeps the live path's cost at the queue put (a few microseconds) and the
  candidate's CPU off the live threads' interpreter. The child is started on
  the first comparison; if it dies, hangs (``timeout``) or loads another
  revision than the candidate's, shadowing stops with one ``error`` line and
  the live decisions go on untouched.
- ``"thread"``: the candidate is evaluated in the worker thread of this
  process (simpler, no child; costs live latency under load, see above).

:meth:`ShadowEngine.drain` waits for the queued comparisons (tests);
``stats`` counts them.
"""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from gatekeeper._logging import get_logger
from gatekeeper.engines.base import PolicyEngine
from gatekeeper.errors import EngineError, GatekeeperError

__all__ = ["COMPARED_KEYS", "ShadowEngine", "ShadowStats"]

#: What shadow mode compares between the live and the candidate decision.
COMPARED_KEYS = ("decision", "rules", "obligations", "allowed_fields")

_log = get_logger("gatekeeper.shadow")
_DROP_LOG_INTERVAL = 60.0


@dataclass(slots=True)
class ShadowStats:
    """Counters: offered to the queue, compared, differing, dropped (queue full or
    shadowing stopped), and candidate failures."""

    offered: int = 0
    compared: int = 0
    differences: int = 0
    dropped: int = 0
    candidate_errors: int = 0


@dataclass(frozen=True, slots=True)
class _Job:
    policy_input: Mapping[str, Any]
    live: Mapping[str, Any]


class _ChildCandidate:
    """The candidate in a child process: one JSON line in, one JSON line out."""

    def __init__(self, root: Path, revision: str, timeout: float) -> None:
        self.timeout = timeout
        package_parent = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper.engines._shadow_worker", str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        hello = self._read(max(timeout, 60.0))
        if "fatal" in hello:
            self.close()
            raise EngineError(f"shadow worker failed to start: {hello['fatal']}")
        if hello.get("revision") != revision:
            self.close()
            raise EngineError(
                f"shadow worker loaded revision {hello.get('revision')}, expected {revision}: "
                "the candidate pack changed on disk",
                reason="policy_revision_mismatch",
            )

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def _read(self, timeout: float) -> dict[str, Any]:
        _stdin, stdout = self._pipes()
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            raise EngineError("shadow worker did not answer in time", reason="engine_timeout")
        line = stdout.readline()
        if not line:
            raise EngineError("shadow worker exited", reason="engine_unreachable")
        value = json.loads(line)
        if not isinstance(value, dict):
            raise EngineError("shadow worker sent a malformed line")
        return value

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        stdin, _stdout = self._pipes()
        try:
            stdin.write(json.dumps({"input": policy_input}, ensure_ascii=False).encode() + b"\n")
            stdin.flush()
        except OSError as exc:
            raise EngineError("shadow worker pipe closed", reason="engine_unreachable") from exc
        answer = self._read(self.timeout)
        if "error" in answer:
            raise EngineError("candidate failed", reason=str(answer["error"]))
        result = answer.get("ok")
        if not isinstance(result, dict):
            raise EngineError("shadow worker sent no result")
        return result

    def close(self) -> None:
        proc = self._proc
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


class ShadowEngine:
    """Returns the live engine's decisions; evaluates ``candidate`` beside them and
    logs differences (see the module docstring for the cost bound)."""

    def __init__(
        self,
        live: PolicyEngine,
        candidate: PolicyEngine,
        *,
        isolation: Literal["process", "thread"] = "process",
        max_pending: int = 256,
        timeout: float = 10.0,
    ) -> None:
        if isolation not in ("process", "thread"):
            raise ValueError(f"isolation must be 'process' or 'thread', not {isolation!r}")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._root: Path | None = None
        if isolation == "process":
            pack = getattr(candidate, "pack", None)
            root = getattr(pack, "root", None)
            if not isinstance(root, Path):
                raise ValueError(
                    "process isolation re-creates the candidate from its pack directory: "
                    "give an EmbeddedEngine candidate (or isolation='thread')"
                )
            self._root = root.resolve()
        self.live = live
        self.candidate = candidate
        #: The live engine's name: decisions say which engine decided them.
        self.name = live.name
        self.isolation = isolation
        self.timeout = timeout
        self.stats = ShadowStats()
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._stopped = False
        self._closing = False
        self._last_drop_log = 0.0
        self._child: _ChildCandidate | None = None
        self._worker = threading.Thread(target=self._run, name="gatekeeper-shadow", daemon=True)
        self._worker.start()

    # -- the PolicyEngine protocol (all of it the live engine's) ------------------

    @property
    def revision(self) -> str:
        return self.live.revision

    @property
    def pack(self) -> Any:
        """The live engine's pack (the Gatekeeper reads its blocking obligations)."""
        return getattr(self.live, "pack", None)

    @property
    def candidate_revision(self) -> str:
        return self.candidate.revision

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        """The live engine's result, unchanged; the comparison is queued, never awaited."""
        result = self.live.evaluate(policy_input)
        self._offer(policy_input, result)
        return result

    # -- the shadow side ------------------------------------------------------------

    def _offer(self, policy_input: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Queue a comparison without blocking; never raises."""
        try:
            with self._lock:
                self.stats.offered += 1
                if self._stopped or self._closing:
                    self.stats.dropped += 1
                    return
                self._pending += 1
            try:
                self._queue.put_nowait(_Job(policy_input, result))
            except queue.Full:
                now = time.monotonic()
                with self._lock:
                    self._pending -= 1
                    self.stats.dropped += 1
                    dropped = self.stats.dropped
                    noisy = now - self._last_drop_log > _DROP_LOG_INTERVAL
                    if noisy:
                        self._last_drop_log = now
                    self._idle.notify_all()
                if noisy:
                    _log.warning("shadow_dropped", dropped=dropped, reason="queue_full")
        except Exception:  # noqa: S110 - the live decision must not see shadow trouble
            pass

    def _candidate_evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        if self.isolation == "thread":
            return self.candidate.evaluate(policy_input)
        if self._child is None:
            assert self._root is not None
            self._child = _ChildCandidate(self._root, self.candidate.revision, self.timeout)
        return self._child.evaluate(policy_input)

    def _stop(self, reason: str, message: str) -> None:
        """Stop shadowing for good (the live engine goes on)."""
        with self._lock:
            self._stopped = True
        _log.error(
            "shadow_stopped",
            reason=reason,
            error=message,
            candidate_revision=self.candidate.revision,
        )
        if self._child is not None:
            child, self._child = self._child, None
            child.close()

    def _compare(self, job: _Job, candidate: Mapping[str, Any]) -> None:
        live = job.live
        changed = [key for key in COMPARED_KEYS if live.get(key) != candidate.get(key)]
        with self._lock:
            self.stats.compared += 1
            if changed:
                self.stats.differences += 1
        if not changed:
            return
        _log.warning(
            "shadow_difference",
            request_id=job.policy_input.get("request_id"),
            live_revision=self.live.revision,
            candidate_revision=self.candidate.revision,
            changed=changed,
            live_decision=live.get("decision"),
            candidate_decision=candidate.get("decision"),
            live_rules=list(live.get("rules") or []),
            candidate_rules=list(candidate.get("rules") or []),
            live_obligations=list(live.get("obligations") or []),
            candidate_obligations=list(candidate.get("obligations") or []),
            live_allowed_count=len(live.get("allowed_fields") or []),
            candidate_allowed_count=len(candidate.get("allowed_fields") or []),
        )

    def _process(self, job: _Job) -> None:
        with self._lock:
            stopped = self._stopped or self._closing
        if stopped:
            with self._lock:
                self.stats.dropped += 1
            return
        try:
            result = self._candidate_evaluate(job.policy_input)
        except EngineError as exc:
            if exc.reason in ("engine_unreachable", "engine_timeout", "policy_revision_mismatch"):
                self._stop(exc.reason, str(exc))
                with self._lock:
                    self.stats.dropped += 1
                return
            with self._lock:
                self.stats.candidate_errors += 1
            _log.warning(
                "shadow_candidate_error",
                request_id=job.policy_input.get("request_id"),
                reason=exc.reason,
                candidate_revision=self.candidate.revision,
            )
            return
        except (GatekeeperError, OSError, ValueError) as exc:
            self._stop("shadow_worker_failed", f"{type(exc).__name__}: {exc}")
            return
        self._compare(job, result)

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing:
                    return
                continue
            try:
                self._process(job)
            except Exception as exc:  # a bug here must not kill the worker silently
                _log.error("shadow_internal_error", error=repr(exc))
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued comparison is done; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        """Finish the queued comparisons (briefly), stop the worker, close both engines."""
        self.drain(timeout=2.0)
        with self._lock:
            self._closing = True
        self._worker.join(timeout=self.timeout + 1.0)
        if self._child is not None:
            child, self._child = self._child, None
            child.close()
        try:
            self.candidate.close()
        finally:
            self.live.close()
