"""The embedded engine: regopy (Microsoft rego-cpp) in-process, with a deadline.

The pack is compiled once per worker thread into a bundle
(``Interpreter.build`` with the entrypoint) and each decision runs
``query_bundle_entrypoint`` on a worker. regopy's interpreter is not
documented as thread-safe, so each worker owns its interpreter and bundle.
There are at most ``max_workers`` of them evaluating within their deadline
(default: the number of cores, at least 2; more would only share the same
cores); decisions beyond that wait in a queue for the first free worker,
within their own deadline. A burst of decisions on a fresh engine so no
longer starts (and compiles the pack for) one worker per decision.

Why workers: rego-cpp cannot be interrupted, and a pack can be made to
evaluate for minutes (a set comprehension over 20,000 numbers took 156 s
here). regopy calls rego-cpp through ctypes, which releases the GIL, so the
caller waits for its worker at most ``timeout`` seconds (a new worker's
compilation of the pack included) and then denies (``engine_timeout``) while
the worker finishes in the background and is reused afterwards. Once
``MAX_OVERDUE`` evaluations run past their deadline, decisions are refused
at once until one of them ends: no more threads, no more cores taken. In a
forked child the parent's workers are forgotten (their threads did not come
along) and the first decision there starts a new one. The hand-off costs
tens of microseconds on a decision of several milliseconds
(``bench/decide.py``).

    >>> from gatekeeper.engines import EmbeddedEngine, load_pack
    >>> engine = EmbeddedEngine(load_pack("policies"))
    >>> engine.name
    'embedded'
"""

from __future__ import annotations

import collections
import json
import os
import queue
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import regopy

from gatekeeper.engines._pack import ENTRYPOINT, PolicyPack
from gatekeeper.engines.base import check_policy_output
from gatekeeper.errors import EngineError, PolicyError

__all__ = ["DEFAULT_TIMEOUT", "MAX_OVERDUE", "EmbeddedEngine", "default_max_workers"]

#: Seconds a decision may take (``embedded_timeout``). A decision takes a few
#: milliseconds; the deadline is there for a pack that runs away.
DEFAULT_TIMEOUT = 1.0
#: Evaluations still running past their deadline, at most (threads kept busy).
MAX_OVERDUE = 4
#: Seconds the engine's first worker may take to compile the pack, when the
#: engine is made (a later worker compiles within its first decision's deadline).
_COMPILE_WAIT = 60.0


def default_max_workers() -> int:
    """Workers evaluating at once (besides those past their deadline): the
    cores this process may use, at least 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 2
    return max(2, cores)


class _Compiled:
    __slots__ = ("bundle", "interpreter")

    def __init__(self, pack: PolicyPack) -> None:
        interpreter = regopy.Interpreter()
        # Built-in errors become errors, not silent undefined values.
        interpreter.strict_built_in_errors = True
        for rel, source in pack.modules.items():
            interpreter.add_module(rel, source)
        interpreter.add_data_json(json.dumps(pack.data))
        self.interpreter = interpreter
        self.bundle = interpreter.build(None, [ENTRYPOINT])
        if not self.bundle.ok():
            # rego-cpp prints its errors itself; querying such a bundle crashes
            # the process (a segmentation fault), so it is never used.
            raise PolicyError(
                "rego-cpp reported errors (it prints them itself; "
                "`gatekeeper policy check` names them too)"
            )

    def run(self, input_text: str) -> str:
        """The result set's JSON text (``undefined`` when there is none)."""
        self.interpreter.set_input_term(input_text)
        output = self.interpreter.query_bundle_entrypoint(self.bundle, ENTRYPOINT)
        if not output.ok():
            raise EngineError(f"embedded engine error: {output}")
        return str(output)


class _Job:
    """One evaluation handed to a worker. ``done`` and ``overdue`` change under
    the pool's lock, so a caller that gives up and a worker that finishes
    agree on which happened first."""

    __slots__ = ("done", "error", "generation", "input_text", "output", "overdue", "queued")

    def __init__(self, input_text: str) -> None:
        self.input_text = input_text
        self.done = threading.Event()
        self.output: str | None = None
        self.error: BaseException | None = None
        self.overdue = False
        #: Waiting in the pool's queue for a free worker (not running yet).
        self.queued = False
        #: The pool generation of the worker it was handed to.
        self.generation = -1


class _Worker:
    """A daemon thread with its own interpreter and compiled bundle.

    ``begin`` starts the thread, after the first job (if any) is queued: the
    pack is compiled first, so that job's deadline covers the compilation.
    A worker whose compilation failed answers its queued jobs with the error
    and ends; it is never idle."""

    __slots__ = ("_jobs", "_pack", "_pool", "failure", "generation", "ready", "thread")

    def __init__(self, pool: _Pool, pack: PolicyPack, generation: int) -> None:
        self._pool = pool
        self._pack = pack
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.generation = generation
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gatekeeper-regopy", daemon=True)

    def begin(self) -> None:
        try:
            self.thread.start()
        except RuntimeError as exc:  # can't start new thread
            raise EngineError(f"the embedded engine cannot start a worker: {exc}") from exc

    def submit(self, job: _Job) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        try:
            compiled = _Compiled(self._pack)
        except BaseException as exc:  # regopy raises RegoError and others
            self.failure = exc
            self.ready.set()
            error = EngineError(
                f"the embedded engine cannot compile the pack: {type(exc).__name__}: {exc}"
            )
            while True:  # the jobs queued before the thread began
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    return
                if job is None:
                    return
                job.error = error
                self._pool.finished(self, job, reuse=False)
        self.ready.set()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.output = compiled.run(job.input_text)
            except BaseException as exc:  # reported by the caller as an EngineError
                job.error = exc
            self._pool.finished(self, job)


class _Pool:
    """The workers of one engine. It holds no reference to the engine, so an
    engine nobody closes is still collected, and its workers stopped then.

    Under ``lock``: ``busy`` counts the workers of the current generation that
    hold a job; ``overdue_now`` those of them whose job is past its deadline.
    ``busy - overdue_now`` (the workers within a deadline) never exceeds
    ``max_workers``: a job beyond that waits in ``queue``. ``overdue`` counts
    every evaluation past its deadline, older generations included (the
    ``MAX_OVERDUE`` refusal: threads and cores still taken). At most
    ``max_workers`` workers wait idle; more are stopped."""

    def __init__(self, pack: PolicyPack, max_workers: int) -> None:
        self.pack = pack
        self.max_workers = max_workers
        # Reentrant: the engine's finalizer (close) may run from a garbage
        # collection triggered while this thread holds the lock.
        self.lock = threading.RLock()
        self.idle: list[_Worker] = []
        #: Jobs waiting for a free worker, oldest first.
        self.queue: collections.deque[_Job] = collections.deque()
        self.busy = 0
        self.overdue_now = 0
        #: Evaluations still running past their deadline (or still compiling then).
        self.overdue = 0
        #: Bumped by ``close``: workers of an older generation stop when done.
        self.generation = 0
        _POOLS.add(self)

    def forget_threads(self) -> None:
        """In a forked child (a pre-forking server, ``gunicorn --preload``): the
        workers' threads stayed in the parent, so none is idle, busy or overdue
        here, no job waits, and the lock may have been held at the fork."""
        self.lock = threading.RLock()
        self.idle = []
        self.queue = collections.deque()
        self.busy = 0
        self.overdue_now = 0
        self.overdue = 0
        self.generation += 1

    def first(self) -> _Worker:
        """The engine's first worker, once it has compiled the pack (EngineError if not)."""
        worker = _Worker(self, self.pack, self.generation)
        worker.begin()
        try:
            compiled = worker.ready.wait(_COMPILE_WAIT)
        except BaseException:
            worker.stop()
            raise
        if not compiled:
            worker.stop()
            raise EngineError(f"compiling the pack took longer than {_COMPILE_WAIT:g} s")
        if worker.failure is not None:
            failure = worker.failure
            if isinstance(failure, PolicyError):
                raise EngineError(str(failure))
            raise EngineError(f"{type(failure).__name__}: {failure}")
        return worker

    def _full(self) -> bool:
        return self.busy - self.overdue_now >= self.max_workers

    def dispatch(self, job: _Job) -> None:
        """Hand ``job`` to an idle worker, or to a new one that compiles the pack
        first (within the job's deadline), while fewer than ``max_workers``
        work within their deadline; else queue it for the first worker to
        free up. Refused at once while ``MAX_OVERDUE`` evaluations are running
        past their deadline."""
        with self.lock:
            if self.overdue >= MAX_OVERDUE:
                raise EngineError(
                    f"the embedded engine is busy with {self.overdue} evaluations "
                    "past their deadline",
                    reason="engine_timeout",
                )
            if self._full():
                job.queued = True
                self.queue.append(job)
                return
            worker = self._assign(job)
            if worker is None:
                return
        try:
            worker.begin()
        except EngineError:  # the thread did not start: nobody will answer the job
            with self.lock:
                if worker.generation == self.generation:
                    self.busy -= 1
            raise

    def _assign(self, job: _Job) -> _Worker | None:
        """Under the lock: ``job`` to an idle worker (None), or to a new one,
        returned to be begun (its thread started) by the caller."""
        if self.idle:
            self._hand(job, self.idle.pop())
            return None
        worker = _Worker(self, self.pack, self.generation)
        self._hand(job, worker)
        return worker

    def _hand(self, job: _Job, worker: _Worker) -> None:
        """Under the lock: ``job`` to ``worker`` (of the current generation), busy."""
        self.busy += 1
        job.generation = self.generation
        worker.submit(job)

    def _next_queued(self) -> _Job:
        """Under the lock: the oldest queued job, out of the queue."""
        job = self.queue.popleft()
        job.queued = False
        return job

    def give_up(self, job: _Job) -> bool:
        """The caller stops waiting for ``job``: True if it will not be answered
        (taken out of the queue, or running on, now overdue); False if it
        ended just now and its answer is there."""
        with self.lock:
            if job.done.is_set():
                return False
            if job.queued:  # never ran: nothing runs on for it
                job.queued = False
                self.queue.remove(job)
                return True
            job.overdue = True
            self.overdue += 1
            if job.generation == self.generation:
                self.overdue_now += 1
                # One fewer worker within its deadline: a queued job may start.
                self._start_for_queue()
            return True

    def _start_for_queue(self) -> None:
        """Under the lock: the oldest queued job to an idle or a new worker, if
        the cap allows."""
        if not self.queue or self._full() or self.overdue >= MAX_OVERDUE:
            return
        job = self._next_queued()
        worker = self._assign(job)
        if worker is None:
            return
        try:
            worker.begin()
        except EngineError as exc:
            self.busy -= 1
            job.error = exc
            job.done.set()

    def finished(self, worker: _Worker, job: _Job, *, reuse: bool = True) -> None:
        """``job`` ended: its answer goes to its caller (if still waiting); the
        worker takes the oldest queued job if the cap allows, or waits idle
        (or stops: the engine was closed, enough wait idle, or it cannot
        evaluate)."""
        with self.lock:
            job.done.set()
            current = worker.generation == self.generation
            if job.overdue:
                self.overdue -= 1
                if current:  # the job was handed in the worker's generation
                    self.overdue_now -= 1
            if current:
                self.busy -= 1
            if current and reuse:
                if self.queue and not self._full():
                    self._hand(self._next_queued(), worker)
                    return
                if len(self.idle) < self.max_workers:
                    self.idle.append(worker)
                    return
            elif current:
                # A worker that cannot evaluate leaves its slot to a new one.
                self._start_for_queue()
                return
        worker.stop()

    def close(self) -> None:
        with self.lock:
            self.generation += 1
            self.busy = 0
            self.overdue_now = 0
            idle, self.idle = self.idle, []
            waiting, self.queue = list(self.queue), collections.deque()
            for job in waiting:
                job.queued = False
                job.error = EngineError("the embedded engine was closed")
                job.done.set()
        for worker in idle:
            worker.stop()


#: Every live pool, to be reset in a forked child.
_POOLS: weakref.WeakSet[_Pool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool.forget_threads()


os.register_at_fork(after_in_child=_after_fork_in_child)


class EmbeddedEngine:
    """Decides in-process with regopy; fails closed with EngineError.

    ``timeout``: seconds a decision may take before it is an
    ``engine_timeout`` deny (the evaluation goes on in its worker, which is
    reused once it ends). ``max_workers``: workers evaluating at once within
    their deadline (default :func:`default_max_workers`); further decisions
    wait for one of them, within their own deadline.
    """

    name = "embedded"

    def __init__(
        self,
        pack: PolicyPack,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_workers: int | None = None,
    ) -> None:
        if not 0 < timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 seconds")
        if max_workers is None:
            max_workers = default_max_workers()
        if not 1 <= max_workers <= 256:
            raise ValueError("max_workers must be between 1 and 256")
        self._pack = pack
        self.timeout = timeout
        self.max_workers = max_workers
        self._never_release = frozenset(
            pack.data.get("catalog", {}).get("fields", {}).get("status", ())
        )
        try:
            probe = regopy.Interpreter()
            pack.check_builtins(probe.is_builtin)
        except PolicyError:
            raise
        except Exception as exc:  # regopy raises RegoError and others
            raise PolicyError(f"the embedded engine cannot compile the pack: {exc}") from exc
        self._pool = _Pool(pack, max_workers)
        # The first worker compiles now: a pack that does not compile is refused here.
        try:
            self._pool.idle.append(self._pool.first())
        except EngineError as exc:
            raise PolicyError(f"the embedded engine cannot compile the pack: {exc}") from exc
        weakref.finalize(self, self._pool.close)

    @property
    def revision(self) -> str:
        return self._pack.revision

    @property
    def pack(self) -> PolicyPack:
        return self._pack

    @property
    def overdue(self) -> int:
        """Evaluations still running past their deadline (at most ``MAX_OVERDUE``
        plus the decisions that were waiting at once when the cap was reached)."""
        return self._pool.overdue

    def evaluate_raw(self, policy_input: Mapping[str, Any]) -> Any:
        """The entrypoint's value, unchecked (None when undefined)."""
        try:
            # ensure_ascii=False: rego-cpp does not decode \uXXXX escapes in input
            # strings (it would compare and match the escape text), so the
            # input goes as UTF-8, the way OPA reads it.
            job = _Job(json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False))
        except Exception as exc:  # not JSON-shaped
            raise EngineError(f"embedded engine failed: {type(exc).__name__}: {exc}") from exc
        self._pool.dispatch(job)
        try:
            answered = job.done.wait(self.timeout)
        except BaseException:  # KeyboardInterrupt...: the evaluation still counts
            self._pool.give_up(job)
            raise
        if not answered and self._pool.give_up(job):
            raise EngineError(
                f"the embedded engine did not decide within {self.timeout:g} s",
                reason="engine_timeout",
            )
        if job.error is not None:
            if isinstance(job.error, EngineError):
                raise job.error
            error = job.error
            raise EngineError(f"embedded engine failed: {type(error).__name__}: {error}") from error
        text = job.output
        if text is None or text == "undefined":
            return None
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise EngineError(
                f"embedded engine failed: {type(exc).__name__}: {exc}",
                reason="malformed_policy_output",
            ) from exc
        expressions = parsed.get("expressions") if isinstance(parsed, dict) else None
        if not expressions:
            return None
        return expressions[0]

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        raw = self.evaluate_raw(policy_input)
        if raw is None:
            raise EngineError("the policy decision is undefined", reason="undefined_decision")
        return check_policy_output(raw, policy_input, self._never_release)

    def close(self) -> None:
        """Stop the idle workers; busy ones stop when their evaluation ends. The
        engine stays usable: a later decision starts a new worker."""
        self._pool.close()
