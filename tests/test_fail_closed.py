"""Fail closed, for real: every way the engine can fail is a deny with a reason.

The OPA tests run a real OPA server (and a real TCP proxy that delays it);
the malformed and undefined cases run a real server and the embedded engine
on a copy of the pack with one deliberate defect, loaded by both sides so
the revision check passes and the defect itself is what is tested.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import gatekeeper
from gatekeeper import AccessDenied, Gatekeeper, Settings
from gatekeeper.decision import Effect
from gatekeeper.engines import EmbeddedEngine, OpaServerEngine, PolicyEngine, load_pack
from gatekeeper.engines.embedded import MAX_OVERDUE
from gatekeeper.errors import EngineError, PolicyError
from gatekeeper.request import parse_request
from tests.conftest import POLICIES_DIR, copy_pack, uncompilable_pack
from tests.opa_server import CannedOpa, OpaServer, SlowProxy

CASES = {
    json.loads(line)["id"]: json.loads(line)["request"]
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
}
TEACHER = CASES["A01"]  # a permit on a healthy engine
WARRANT = CASES["A10"]  # a permit under IMM-10


def mutated_pack(
    tmp_path: Path, old: str, new: str, file: str = "gatekeeper/decision.rego"
) -> Path:
    """A copy of policies/ with one text replacement (which must apply)."""
    target = copy_pack(tmp_path)
    path = target / file
    text = path.read_text()
    assert old in text, f"mutation anchor not found in {file}: {old!r}"
    path.write_text(text.replace(old, new, 1))
    return target


def pack_with_line(tmp_path: Path, line: str) -> Path:
    """A copy of policies/ with ``line`` first in the body of process.rego's in_date."""
    return mutated_pack(
        tmp_path, "in_date if {\n", "in_date if {\n" + line, file="gatekeeper/process.rego"
    )


def assert_denied(gk: Gatekeeper, request: dict[str, Any], reason: str) -> None:
    decision = gk.decide(request)
    assert decision.decision is Effect.DENY
    assert decision.allowed_fields == ()
    assert decision.reason == reason, decision.to_dict()
    assert "Release nothing" in decision.guidance


def assert_permits(gk: Gatekeeper, request: dict[str, Any], within: float = 5.0) -> None:
    """The Gatekeeper permits ``request`` within a few tries: at the start of a
    test, and again once a fault is over (the same instance, without a restart).

    The first decision on a new engine, and the first after a fault, also checks
    the server's revision (several requests under one ``timeout``): on a loaded
    CI machine that can miss a 0.25 s deadline once (a deny, the safe way), so
    each is given a few tries, and each miss must be a timeout, nothing else."""
    give_up = time.monotonic() + within
    while True:
        decision = gk.decide(request)
        if decision.decision is Effect.PERMIT:
            return
        assert decision.reason == "engine_timeout", decision.to_dict()
        assert time.monotonic() < give_up, f"no recovery within {within} s: {decision.to_dict()}"
        time.sleep(0.05)


@pytest.fixture
def healthy_opa(opa_bin: Path) -> Iterator[OpaServer]:
    with OpaServer(POLICIES_DIR, opa_bin=opa_bin) as server:
        yield server


@pytest.mark.opa
def test_opa_server_stopped(healthy_opa: OpaServer) -> None:
    # A refused connection is reported at once, whatever the deadline: a
    # generous one keeps a stall on a loaded machine from reading as a timeout.
    engine = OpaServerEngine(load_pack(POLICIES_DIR), url=healthy_opa.url, timeout=5.0)
    gk = Gatekeeper(engine=engine, allow_unaudited=True)
    assert_permits(gk, TEACHER)
    healthy_opa.stop()
    started = time.monotonic()
    assert_denied(gk, TEACHER, "engine_unreachable")
    assert time.monotonic() - started < 1.0


@pytest.mark.opa
def test_opa_server_never_started() -> None:
    from tests.opa_server import free_port

    engine = OpaServerEngine(
        load_pack(POLICIES_DIR), url=f"http://127.0.0.1:{free_port()}", timeout=5.0
    )
    assert_denied(Gatekeeper(engine=engine), WARRANT, "engine_unreachable")


@pytest.mark.opa
def test_opa_server_slow(healthy_opa: OpaServer) -> None:
    with SlowProxy("127.0.0.1", healthy_opa.port or 0, delay=0.0) as proxy:
        engine = OpaServerEngine(load_pack(POLICIES_DIR), url=proxy.url, timeout=0.25)
        gk = Gatekeeper(engine=engine, allow_unaudited=True)
        assert_permits(gk, TEACHER)  # healthy through the proxy
        proxy.delay = 1.0
        started = time.monotonic()
        assert_denied(gk, TEACHER, "engine_timeout")
        elapsed = time.monotonic() - started
        assert elapsed < 0.6, f"deny took {elapsed:.3f}s with a 0.25s timeout"
        proxy.delay = 0.0  # the fault ends: the engine recovers by itself
        time.sleep(1.1)  # let the delayed reply of the abandoned request drain
        assert_permits(gk, TEACHER)


@pytest.mark.opa
def test_opa_server_with_another_revision(tmp_path: Path, opa_bin: Path) -> None:
    other = mutated_pack(
        tmp_path,
        '"subpoena_min_notice_days": 10',
        '"subpoena_min_notice_days": 3',
        file="catalog/data.json",
    )
    with OpaServer(other, opa_bin=opa_bin) as server:
        # Which revision is served, not how fast (the deadline has tests of its own).
        engine = OpaServerEngine(load_pack(POLICIES_DIR), url=server.url, timeout=5.0)
        assert engine.server_revision() == load_pack(other).revision
        assert engine.server_revision() != engine.revision
        assert_denied(Gatekeeper(engine=engine), TEACHER, "policy_revision_mismatch")


def _both_engines(
    pack_dir: Path, opa_bin: Path
) -> Iterator[tuple[str, Callable[[], PolicyEngine]]]:
    pack = load_pack(pack_dir)
    yield "embedded", lambda: EmbeddedEngine(pack)
    server = OpaServer(pack_dir, opa_bin=opa_bin)
    server.start()
    try:
        # These tests are about what the engine answers, not how fast: a loaded
        # CI machine must not turn the first (revision-checked) decision into
        # an engine_timeout (the deadlines have tests of their own).
        yield "opa", lambda: OpaServerEngine(pack, url=server.url, timeout=5.0)
    finally:
        server.stop()


@pytest.mark.opa
def test_undefined_decision_is_denied(tmp_path: Path, opa_bin: Path) -> None:
    # The entrypoint exists but is undefined for this input.
    pack_dir = mutated_pack(
        tmp_path,
        '"immigration_context": immigration_context,\n}',
        '"immigration_context": immigration_context,\n} if input.never_present',
    )
    for name, make in _both_engines(pack_dir, opa_bin):
        assert_denied(Gatekeeper(engine=make()), TEACHER, "undefined_decision"), name


@pytest.mark.opa
@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        # a key missing from the decision object
        ('"guidance": guidance,\n', "", "malformed_policy_output"),
        # an effect the contract does not know
        ('"decision": final_effect,', '"decision": "allow",', "malformed_policy_output"),
        # a status field released: the Python check is the last line of defence
        (
            '"allowed_fields": allowed_fields,',
            '"allowed_fields": array.concat(allowed_fields, ["citizenship_status"]),',
            "unsafe_policy_output",
        ),
        # fields released without a permit
        ('"decision": final_effect,', '"decision": "deny",', "unsafe_policy_output"),
    ],
    ids=["missing-key", "unknown-effect", "status-field", "fields-on-deny"],
)
def test_malformed_decision_is_denied(
    tmp_path: Path, opa_bin: Path, old: str, new: str, reason: str
) -> None:
    pack_dir = mutated_pack(tmp_path, old, new)
    for name, make in _both_engines(pack_dir, opa_bin):
        gk = Gatekeeper(engine=make(), allow_unaudited=True)
        decision = gk.decide(TEACHER)
        assert decision.decision is Effect.DENY, name
        assert decision.reason == reason, (name, decision.to_dict())
        assert decision.allowed_fields == ()


@pytest.mark.opa
@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b"\x00\xffnot json"), (500, b'{"code": "internal_error"}'), (200, b"[]")],
    ids=["garbage", "http-500", "not-an-object"],
)
def test_garbage_from_the_server_is_denied(status: int, body: bytes) -> None:
    with CannedOpa(status=status, body=body) as canned:
        engine = OpaServerEngine(load_pack(POLICIES_DIR), url=canned.url)
        decision = Gatekeeper(engine=engine).decide(TEACHER)
        assert decision.decision is Effect.DENY
        assert decision.reason is not None and decision.allowed_fields == ()


def test_unsupported_builtin_is_refused_at_load(tmp_path: Path) -> None:
    # rego-cpp evaluates an unknown built-in to undefined, so `not expired`
    # would allow: the pack is checked before either engine uses it.
    pack_dir = pack_with_line(tmp_path, '\ttime.parse_rfc3339_ns("2020-01-01T00:00:00Z") > 0\n')
    with pytest.raises(PolicyError, match=r"time\.parse_rfc3339_ns"):
        load_pack(pack_dir)


@pytest.mark.parametrize(
    "line",
    [
        # a "#" inside a string once hid the rest of its line from the check
        '\tconcat("#", ["a", "b"]) != sprintf("%d", [time.now_ns()])\n',
        # a raw string, and a quote inside a comment, do not shift what is code
        '\t`#` != "x" # don\'t " open a string\n\ttime.now_ns() > 0\n',
        # an escaped quote does not end the string
        '\t"a\\"#" != sprintf("%d", [time.now_ns()])\n',
    ],
    ids=["hash-in-string", "raw-string-and-comment", "escaped-quote"],
)
def test_a_forbidden_builtin_after_a_hash_in_a_string_is_refused(tmp_path: Path, line: str) -> None:
    pack_dir = pack_with_line(tmp_path, line)
    with pytest.raises(PolicyError, match=r"time\.now_ns \(gatekeeper/process\.rego:\d+\)"):
        load_pack(pack_dir)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # OPA 1.x interpolates template strings: the call inside is code
        ('\tx := $"{time.now_ns()}"\n', r"a template string \(gatekeeper/process\.rego:\d+\)"),
        ('\tx := $`{sprintf("%d", [1])}`\n', r"a template string"),
        # a built-in put in place of a function
        ('\tv := g("%d", [5]) with g as sprintf\n', r"sprintf \(gatekeeper/process\.rego:\d+\)"),
    ],
    ids=["template-string", "raw-template-string", "with-as-builtin"],
)
def test_calls_hidden_in_templates_or_with_are_refused(
    tmp_path: Path, line: str, message: str
) -> None:
    pack_dir = pack_with_line(tmp_path, line)
    with pytest.raises(PolicyError, match=message):
        load_pack(pack_dir)


def test_with_replacing_data_or_input_is_not_a_call(tmp_path: Path) -> None:
    pack_dir = pack_with_line(
        tmp_path, '\ty := 1 with input as {"a": 1}\n\tz := 2 with data.catalog.x as y\n'
    )
    load_pack(pack_dir)  # no error


def test_builtins_in_strings_and_comments_are_not_calls(tmp_path: Path) -> None:
    pack_dir = pack_with_line(tmp_path, '\t"time.now_ns()" != `sprintf("#")` # time.now_ns()\n')
    assert "time.now_ns" not in load_pack(pack_dir).builtin_calls()


def test_a_pack_regopy_cannot_compile_is_refused_at_load(tmp_path: Path) -> None:
    """A module copied beside itself (every default rule twice): rego-cpp's build
    fails, and querying its bundle crashed the process (a segmentation fault)
    at the first decision. Now the engine is refused when it is made."""
    pack_dir = uncompilable_pack(tmp_path)
    pack = load_pack(pack_dir)
    with pytest.raises(PolicyError, match="cannot compile the pack: rego-cpp reported errors"):
        EmbeddedEngine(pack)
    with pytest.raises(PolicyError, match="rego-cpp reported errors"):
        gatekeeper.open_with(Settings(data_dir=tmp_path / "data", policy_dir=pack_dir))


def test_v0_module_is_refused(tmp_path: Path) -> None:
    pack_dir = mutated_pack(tmp_path, "import rego.v1\n", "", file="gatekeeper/facts.rego")
    with pytest.raises(PolicyError, match="Rego v1"):
        load_pack(pack_dir)


def test_internal_bug_is_a_deny() -> None:
    class Broken:
        name = "embedded"
        revision = "sha256:test"

        def evaluate(self, policy_input: Any) -> dict[str, Any]:
            raise ZeroDivisionError("a bug")

        def close(self) -> None:
            pass

    assert_denied(Gatekeeper(engine=Broken()), TEACHER, "internal_error")


def test_engine_error_is_a_deny() -> None:
    class Down:
        name = "opa"
        revision = "sha256:test"

        def evaluate(self, policy_input: Any) -> dict[str, Any]:
            raise EngineError("down", reason="engine_unreachable")

        def close(self) -> None:
            pass

    gk = Gatekeeper(engine=Down())
    assert_denied(gk, TEACHER, "engine_unreachable")
    with pytest.raises(Exception, match="deny"):
        gk.enforce(TEACHER)


# --- the embedded engine's deadline ------------------------------------------

UNVERIFIED = "identity_unverified if requester.identity_verified != true\n"
# rego-cpp takes about two seconds for this set (its time grows with the
# square of the size: 20,000 numbers took 156 s), for one requester id only.
RUNAWAY = """
runaway := n if {
	requester.id == "runaway"
	n := count({x | some i in numbers.range(1, 2000); x := i * 2})
}

identity_unverified if runaway > 0
"""


def runaway_pack(tmp_path: Path, numbers: int = 2000) -> Path:
    """The pack with RUNAWAY over ``numbers`` numbers (its time grows with the square)."""
    runaway = RUNAWAY.replace("numbers.range(1, 2000)", f"numbers.range(1, {numbers})")
    return mutated_pack(tmp_path, UNVERIFIED, UNVERIFIED + runaway, file="gatekeeper/facts.rego")


def runaway_request() -> dict[str, Any]:
    return {**WARRANT, "requester": {**WARRANT["requester"], "id": "runaway"}}


def regopy_workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gatekeeper-regopy"]


def wait_for_overdue_to_end(engine: EmbeddedEngine, within: float = 60.0) -> None:
    give_up = time.monotonic() + within
    while engine.overdue:
        assert time.monotonic() < give_up, "the overdue evaluations never ended"
        time.sleep(0.05)


def test_embedded_engine_runaway_decision_is_denied_at_the_deadline(tmp_path: Path) -> None:
    gk = gatekeeper.open_with(
        Settings(
            data_dir=tmp_path / "data", policy_dir=runaway_pack(tmp_path), embedded_timeout=0.2
        )
    )
    engine = gk.engine
    assert isinstance(engine, EmbeddedEngine) and engine.timeout == 0.2
    try:
        assert gk.decide(WARRANT).decision is Effect.PERMIT
        started = time.perf_counter()
        decision = gk.decide(runaway_request())
        elapsed = time.perf_counter() - started
        assert decision.decision is Effect.DENY and decision.reason == "engine_timeout"
        assert decision.allowed_fields == () and decision.audit is not None
        assert 0.2 <= elapsed < 1.0, elapsed
        fetched: list[str] = []
        with pytest.raises(AccessDenied), gk.access(runaway_request()):
            fetched.append("the record")  # never runs: decided before the fetch
        assert fetched == []
        # The same Gatekeeper decides again at once, on another worker.
        assert_permits(gk, WARRANT)
        wait_for_overdue_to_end(engine)
        assert gk.decide(WARRANT).decision is Effect.PERMIT
    finally:
        gk.close()
        engine.close()


def test_embedded_engine_keeps_few_evaluations_past_their_deadline(tmp_path: Path) -> None:
    others = set(regopy_workers())  # engines of other tests

    def workers() -> list[threading.Thread]:
        return [t for t in regopy_workers() if t not in others]

    engine = EmbeddedEngine(load_pack(runaway_pack(tmp_path)), timeout=0.1, max_workers=2)
    runaway = parse_request(runaway_request()).to_policy_input()
    normal = parse_request(WARRANT).to_policy_input()
    try:
        for _ in range(MAX_OVERDUE):
            with pytest.raises(EngineError) as caught:
                engine.evaluate(runaway)
            assert caught.value.reason == "engine_timeout"
        assert engine.overdue == MAX_OVERDUE
        assert len(workers()) == MAX_OVERDUE
        # Four evaluations past their deadline: no new thread, an immediate deny.
        started = time.perf_counter()
        with pytest.raises(EngineError, match="past their deadline") as busy:
            engine.evaluate(normal)
        assert busy.value.reason == "engine_timeout"
        # At once: the message names the cap, not the deadline (four runaway
        # evaluations share the two cores with this thread meanwhile).
        assert time.perf_counter() - started < 0.5
        assert len(workers()) == MAX_OVERDUE
        # Once they end, two of the same workers decide again (max_workers wait
        # idle; the others stop).
        wait_for_overdue_to_end(engine)
        assert engine.evaluate(normal)["decision"] == "permit"
        give_up = time.monotonic() + 5
        while len(workers()) > 2 and time.monotonic() < give_up:
            time.sleep(0.01)
        assert len(workers()) == 2
    finally:
        engine.close()
    give_up = time.monotonic() + 5
    while workers() and time.monotonic() < give_up:
        time.sleep(0.01)
    assert workers() == []  # close() stops idle workers


def test_an_embedded_engine_nobody_closes_stops_its_workers_when_collected() -> None:
    others = set(regopy_workers())
    engine = EmbeddedEngine(load_pack(POLICIES_DIR))
    assert engine.evaluate(parse_request(TEACHER).to_policy_input())["decision"] == "permit"
    mine = [t for t in regopy_workers() if t not in others]
    assert len(mine) == 1
    del engine
    gc.collect()
    mine[0].join(5)
    assert not mine[0].is_alive()


def test_embedded_engine_decides_again_after_close() -> None:
    engine = EmbeddedEngine(load_pack(POLICIES_DIR))
    policy_input = parse_request(TEACHER).to_policy_input()
    first = engine.evaluate(policy_input)
    engine.close()
    assert engine.evaluate(policy_input) == first
    engine.close()


def test_embedded_engine_reports_a_pack_that_does_not_compile(tmp_path: Path) -> None:
    bad = mutated_pack(tmp_path, "deciding_rule := final_rules[0]", "deciding_rule := 1 +")
    with pytest.raises(PolicyError, match="cannot compile the pack"):
        EmbeddedEngine(load_pack(bad))


def test_embedded_engine_decides_in_a_forked_child() -> None:
    # A pre-forking server (gunicorn --preload) opens the Gatekeeper, then forks:
    # the parent's worker threads do not exist in the child.
    engine = EmbeddedEngine(load_pack(POLICIES_DIR))
    policy_input = parse_request(TEACHER).to_policy_input()
    assert engine.evaluate(policy_input)["decision"] == "permit"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            started = time.perf_counter()
            answers = [engine.evaluate(policy_input)["decision"] for _ in range(3)]
            os.write(write, f"{answers} {time.perf_counter() - started:.3f}".encode())
        except BaseException as exc:
            os.write(write, f"error {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 4096).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer.startswith("['permit', 'permit', 'permit'] "), answer
    assert float(answer.split()[-1]) < engine.timeout, answer
    assert engine.evaluate(policy_input)["decision"] == "permit"  # the parent's worker
    engine.close()


def test_an_interrupted_wait_still_counts_the_evaluation(tmp_path: Path) -> None:
    engine = EmbeddedEngine(load_pack(runaway_pack(tmp_path)), timeout=30.0)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            engine.evaluate(parse_request(runaway_request()).to_policy_input())
        # The caller is gone; its evaluation runs on and counts toward the cap.
        assert engine.overdue == 1
        wait_for_overdue_to_end(engine)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        engine.close()


def slow_to_compile_pack(tmp_path: Path, rules: int = 2000) -> Path:
    """policies/ and a module of ``rules`` rules nothing uses: rego-cpp takes
    over a second to compile it (0.44 s for 1,000 rules, 3 s for 3,000 here),
    an evaluation still a few milliseconds."""
    target = copy_pack(tmp_path)
    body = "\n".join(f"r{i} := {i} if input.never_{i}" for i in range(rules))
    (target / "gatekeeper" / "unused.rego").write_text(
        f"package gatekeeper.unused\n\nimport rego.v1\n\n{body}\n"
    )
    return target


def test_a_new_workers_compilation_counts_within_the_deadline(tmp_path: Path) -> None:
    engine = EmbeddedEngine(load_pack(slow_to_compile_pack(tmp_path)), timeout=0.05)
    policy_input = parse_request(TEACHER).to_policy_input()
    engine.close()  # the next decision needs a new worker
    started = time.perf_counter()
    with pytest.raises(EngineError) as caught:
        engine.evaluate(policy_input)
    assert caught.value.reason == "engine_timeout"
    # Denied at the deadline, not after the compilation (over a second).
    assert time.perf_counter() - started < 0.5
    wait_for_overdue_to_end(engine)
    engine.close()


def test_the_overdue_cap_holds_with_idle_workers(tmp_path: Path) -> None:
    engine = EmbeddedEngine(load_pack(runaway_pack(tmp_path)), timeout=0.1)
    try:
        for _ in range(MAX_OVERDUE):
            with pytest.raises(EngineError):
                engine.evaluate(parse_request(runaway_request()).to_policy_input())
        engine._pool.idle.append(engine._pool.first())  # an idle worker is there
        started = time.perf_counter()
        with pytest.raises(EngineError, match="past their deadline"):
            engine.evaluate(parse_request(WARRANT).to_policy_input())
        assert time.perf_counter() - started < 0.5  # at once (see above)
        assert len(engine._pool.idle) == 1  # not used: no more cores taken
        wait_for_overdue_to_end(engine)
    finally:
        engine.close()


def test_a_worker_that_cannot_compile_answers_its_job(tmp_path: Path) -> None:
    engine = EmbeddedEngine(load_pack(POLICIES_DIR))
    bad = load_pack(
        mutated_pack(tmp_path, "deciding_rule := final_rules[0]", "deciding_rule := 1 +")
    )
    engine._pool.pack = bad  # the next new worker compiles a pack that does not compile
    engine.close()
    with pytest.raises(EngineError, match="cannot compile the pack"):
        engine.evaluate(parse_request(TEACHER).to_policy_input())
    assert engine._pool.idle == [] and engine.overdue == 0  # never idle, nothing counted


def test_a_burst_on_a_fresh_engine_is_decided_by_a_bounded_pool() -> None:
    """60 decisions at once on an engine just made: before, each started its own
    worker and compiled the pack within its deadline (16 of 40 were denied
    engine_timeout on this machine, 37 threads stayed). Now at most
    ``max_workers`` work and the rest wait for them."""
    others = set(regopy_workers())
    engine = EmbeddedEngine(load_pack(POLICIES_DIR), max_workers=2, timeout=5.0)
    policy_input = parse_request(TEACHER).to_policy_input()
    expected = engine.evaluate(policy_input)
    start = threading.Barrier(60)
    answers: list[Any] = []

    def decide() -> None:
        start.wait()
        try:
            answers.append(engine.evaluate(policy_input))
        except EngineError as exc:
            answers.append(exc)

    threads = [threading.Thread(target=decide) for _ in range(60)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert answers == [expected] * 60
        assert len([t for t in regopy_workers() if t not in others]) <= 2
    finally:
        engine.close()


def test_a_queued_decision_gets_a_worker_when_one_runs_past_its_deadline(
    tmp_path: Path,
) -> None:
    """One worker allowed, held by a runaway evaluation (about 3 s here): the
    next decision waits in the queue; once the runaway one is past its
    deadline (no longer counted among the workers within theirs) a new worker
    takes the queued decision, within that decision's own deadline."""
    engine = EmbeddedEngine(
        load_pack(runaway_pack(tmp_path, numbers=3000)), max_workers=1, timeout=0.8
    )
    runaway = parse_request(runaway_request()).to_policy_input()
    normal = parse_request(WARRANT).to_policy_input()
    expected = engine.evaluate(normal)
    errors: list[EngineError] = []
    answers: list[Any] = []

    def run_away() -> None:
        try:
            engine.evaluate(runaway)
        except EngineError as exc:
            errors.append(exc)

    def decide() -> None:
        answers.append(engine.evaluate(normal))

    first, second = threading.Thread(target=run_away), threading.Thread(target=decide)
    try:
        first.start()
        give_up = time.monotonic() + 5
        while not engine._pool.busy:  # the runaway evaluation holds the one worker
            assert time.monotonic() < give_up
            time.sleep(0.005)
        # Most of a deadline later: once the runaway one is overdue, the queued
        # decision has 0.6 s left for a new worker to compile the pack and decide.
        time.sleep(0.6)
        second.start()
        while not engine._pool.queue:  # it waits for the one worker
            assert second.is_alive() and time.monotonic() < give_up
            time.sleep(0.001)
        second.join(5)
        first.join(5)
        assert answers == [expected]  # decided on a new worker, not denied
        assert [e.reason for e in errors] == ["engine_timeout"]
        wait_for_overdue_to_end(engine)
    finally:
        engine.close()


def test_a_decision_given_up_in_the_queue_is_not_overdue(tmp_path: Path) -> None:
    """The pool itself: a job still queued when its caller stops waiting never
    ran, so it is taken out and not counted past its deadline; closing the
    engine answers the jobs still queued at once."""
    from gatekeeper.engines.embedded import _Job

    engine = EmbeddedEngine(load_pack(runaway_pack(tmp_path)), max_workers=1, timeout=0.5)
    pool = engine._pool
    runaway = json.dumps(parse_request(runaway_request()).to_policy_input())
    normal = json.dumps(parse_request(WARRANT).to_policy_input())
    running, queued, later = _Job(runaway), _Job(normal), _Job(normal)
    try:
        pool.dispatch(running)
        pool.dispatch(queued)
        assert queued.queued and list(pool.queue) == [queued]
        assert pool.give_up(queued) is True
        assert pool.overdue == 0 and not pool.queue and not queued.done.is_set()
        pool.dispatch(later)
        assert later.queued
    finally:
        engine.close()
    assert later.done.is_set() and isinstance(later.error, EngineError)
    assert "closed" in str(later.error)
    assert pool.give_up(running) is True and pool.overdue == 1
    wait_for_overdue_to_end(engine)
