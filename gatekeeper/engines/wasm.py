"""The Wasm engine: the pack compiled by OPA to WebAssembly, run in-process by wasmtime.

OPA's own compiler (``opa build -t wasm``, the pinned binary that
``scripts/build-opa`` builds) turns the pack into one Wasm module; wasmtime
runs it inside this process. It evaluates the same ``policies/`` as the other
two engines, with OPA's semantics, and no server: about a tenth of the
embedded engine's time per decision on this pack (``bench/decide.py``).

The pack is compiled when the engine is created, from the modules and data
of the loaded :class:`~gatekeeper.engines.PolicyPack` written to a private
temporary directory, so the module always matches ``pack.revision``; nothing
compiled is cached on disk. A pack that needs a built-in the Wasm runtime
does not implement (the host would have to supply it) is refused at load.

Each decision uses the OPA Wasm ABI's one-call evaluation (``opa_eval``, ABI
1.2+): the input is copied into the module's memory above the heap mark
left after loading the data, and the heap is reset to that mark on every
call, so memory does not grow with the number of decisions. Each thread has
its own wasmtime store and instance (a store is single-threaded); the
compiled module is shared. A decision that runs longer than ``timeout``
seconds is interrupted (wasmtime epoch interruption) and fails closed, and a
trap discards that thread's instance.

    >>> from gatekeeper.engines import WasmEngine, load_pack     # doctest: +SKIP
    >>> engine = WasmEngine(load_pack("policies"))               # doctest: +SKIP
    >>> engine.evaluate(policy_input)["decision"]                # doctest: +SKIP
    'permit'
"""

from __future__ import annotations

import ctypes
import json
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gatekeeper.engines._pack import ENTRYPOINT, PolicyPack
from gatekeeper.engines.base import check_policy_output
from gatekeeper.errors import EngineError, PolicyError

__all__ = ["WasmEngine", "compile_pack"]

#: Epoch ticks per second of the interruption clock.
_TICKS_PER_SECOND = 100
#: Headroom kept above an input for the evaluation's own allocations.
_HEAP_HEADROOM = 1 << 20
_PAGE = 65536


def compile_pack(pack: PolicyPack, *, opa_bin: str | Path | None = None) -> bytes:
    """The pack compiled to an OPA Wasm module (``policy.wasm``) by ``opa build -t wasm``."""
    from gatekeeper.policy.opa_process import require_opa, run_opa

    opa = require_opa(opa_bin)
    with tempfile.TemporaryDirectory(prefix="gatekeeper-wasm-") as tmp:
        root = Path(tmp) / "pack"
        for rel, source in pack.modules.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source, encoding="utf-8")
        (root / "data.json").write_text(json.dumps(pack.data), encoding="utf-8")
        out = Path(tmp) / "bundle.tar.gz"
        done = run_opa(
            opa,
            "build",
            "-t",
            "wasm",
            "-e",
            ENTRYPOINT,
            "-o",
            str(out),
            str(root),
            timeout=120.0,
        )
        if done.returncode != 0:
            raise PolicyError(f"opa build -t wasm failed: {done.stderr.strip() or done.stdout}")
        try:
            with tarfile.open(out, "r:gz") as bundle:
                for member in bundle.getmembers():
                    if member.name.lstrip("/") == "policy.wasm":
                        extracted = bundle.extractfile(member)
                        if extracted is not None:
                            return extracted.read()
        except (OSError, tarfile.TarError) as exc:
            raise PolicyError(f"cannot read the bundle opa built: {exc}") from exc
    raise PolicyError("opa build -t wasm produced no policy.wasm")


class _Ticker:
    """One daemon thread advancing a wasmtime engine's epoch while decisions run."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gatekeeper-wasm-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / _TICKS_PER_SECOND
        while not self._stop.wait(period):
            self._engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()


class _Instance:
    """One thread's store, instance, memory and loaded data."""

    __slots__ = (
        "_exports",
        "_raw_eval",
        "data_addr",
        "entrypoint",
        "heap_base",
        "memory",
        "opa_eval",
        "store",
    )

    _exports: Any
    opa_eval: Any

    def __init__(self, engine: WasmEngine) -> None:
        import wasmtime

        self.store = wasmtime.Store(engine._wasm_engine)
        # The module states the memory it needs (its import's minimum pages).
        pages = 2
        for item in engine._module.imports:
            if item.name == "memory" and isinstance(item.type, wasmtime.MemoryType):
                pages = max(pages, item.type.limits.min)
        self.memory = wasmtime.Memory(self.store, wasmtime.MemoryType(wasmtime.Limits(pages, None)))
        i32 = wasmtime.ValType.i32()

        def functype(params: int, result: bool = True) -> wasmtime.FuncType:
            return wasmtime.FuncType([i32] * params, [i32] if result else [])

        def abort(addr: int) -> None:
            message = self.cstring(addr)[:200].decode("utf-8", "replace")
            raise RuntimeError(f"opa_abort: {message}")

        def println(addr: int) -> None:  # print() in a policy: ignored
            return None

        def builtin(builtin_id: int, *_: int) -> int:
            raise RuntimeError(f"the policy called host built-in #{builtin_id}")

        imports: list[Any] = []
        for item in engine._module.imports:
            if item.name == "memory":
                imports.append(self.memory)
            elif item.name == "opa_abort":
                imports.append(wasmtime.Func(self.store, functype(1, False), abort))
            elif item.name == "opa_println":
                imports.append(wasmtime.Func(self.store, functype(1, False), println))
            elif item.name is not None and item.name.startswith("opa_builtin"):
                arity = int(item.name.removeprefix("opa_builtin"))
                imports.append(wasmtime.Func(self.store, functype(arity + 2), builtin))
            else:
                raise PolicyError(f"the compiled pack imports {item.module}.{item.name}")
        self.store.set_epoch_deadline(1 << 40)  # loading the data is not timed
        instance = wasmtime.Instance(self.store, engine._module, imports)
        # The module's exports are functions (wasmtime types them as any extern).
        exports: Any = instance.exports(self.store)
        self._exports = exports
        needed = self.call_json("builtins")
        if needed:
            raise PolicyError(
                "the compiled pack needs built-ins the Wasm runtime does not provide: "
                + ", ".join(sorted(needed))
            )
        entrypoints = self.call_json("entrypoints")
        if not isinstance(entrypoints, dict) or ENTRYPOINT not in entrypoints:
            raise PolicyError(f"the compiled pack has no entrypoint {ENTRYPOINT}")
        self.entrypoint = int(entrypoints[ENTRYPOINT])
        self.data_addr = self.parse_json(json.dumps(engine.pack.data).encode("utf-8"))
        self.heap_base = int(exports["opa_heap_ptr_get"](self.store))
        self.opa_eval = exports["opa_eval"]
        self._raw_eval = _RawCall.of(self.store, self.opa_eval, params=7)

    def base(self) -> int:
        return ctypes.addressof(self.memory.data_ptr(self.store).contents)

    def cstring(self, addr: int) -> bytes:
        return ctypes.string_at(self.base() + addr)

    def parse_json(self, payload: bytes) -> int:
        addr = int(self._exports["opa_malloc"](self.store, len(payload)))
        self.memory.write(self.store, payload, addr)
        value = int(self._exports["opa_json_parse"](self.store, addr, len(payload)))
        if value == 0:
            raise PolicyError("the Wasm module could not parse the pack's data")
        return value

    def call_json(self, export: str) -> Any:
        value = self._exports[export](self.store)
        dumped = int(self._exports["opa_json_dump"](self.store, value))
        return json.loads(self.cstring(dumped))

    def evaluate(self, payload: bytes, deadline_ticks: int) -> bytes:
        end = self.heap_base + len(payload) + _HEAP_HEADROOM
        size = self.memory.data_len(self.store)
        if end > size:
            self.memory.grow(self.store, (end - size + _PAGE - 1) // _PAGE)
        ctypes.memmove(self.base() + self.heap_base, payload, len(payload))
        self.store.set_epoch_deadline(deadline_ticks)
        args = (
            0,
            self.entrypoint,
            self.data_addr,
            self.heap_base,
            len(payload),
            self.heap_base + len(payload),
            0,
        )
        if self._raw_eval is not None:
            result = self._raw_eval(*args)
        else:
            result = int(self.opa_eval(self.store, *args))
        return self.cstring(result)


class _RawCall:
    """``opa_eval`` called through ``wasmtime_func_call_unchecked``.

    ``Func.__call__`` looks up the function's type and converts each argument
    through ``Val`` on every call: about 100 us of Python per decision, a
    third of the evaluation. Here the type is checked once (all ``i32``
    parameters, one ``i32`` result) and the arguments go into a preallocated
    raw array; traps and errors are raised as ``Func.__call__`` raises them
    (the same ``enter_wasm``). These are wasmtime-py internals: when any is
    missing (another wasmtime version), :meth:`of` returns None and the
    checked call is used.
    """

    __slots__ = ("_args", "_call", "_context", "_enter", "_error", "_func", "_params", "_store")

    def __init__(self, store: Any, func: Any, params: int) -> None:
        from wasmtime import WasmtimeError, _bindings
        from wasmtime._func import enter_wasm

        self._call = _bindings.wasmtime_func_call_unchecked
        self._args = (_bindings.wasmtime_val_raw * max(params, 1))()
        self._store = store
        self._context = store._context()
        self._func = ctypes.byref(func._func)
        self._enter = enter_wasm
        self._error = WasmtimeError
        self._params = params

    @classmethod
    def of(cls, store: Any, func: Any, *, params: int) -> _RawCall | None:
        try:
            import wasmtime

            i32 = wasmtime.ValType.i32()
            kind = func.type(store)
            if list(kind.params) != [i32] * params or list(kind.results) != [i32]:
                return None
            return cls(store, func, params)
        except (ImportError, AttributeError, TypeError):
            return None

    def __call__(self, *values: int) -> int:
        args = self._args
        for i, value in enumerate(values):
            args[i].i32 = value
        with self._enter(self._store) as trap:
            error = self._call(self._context, self._func, args, self._params, trap)
            if error:
                raise self._error._from_ptr(error)
        return int(args[0].i32) & 0xFFFFFFFF


class WasmEngine:
    """Decides in-process with the OPA-compiled Wasm module; fails closed with EngineError."""

    name = "wasm"

    def __init__(
        self,
        pack: PolicyPack,
        *,
        wasm: bytes | None = None,
        opa_bin: str | Path | None = None,
        timeout: float = 0.25,
    ) -> None:
        try:
            import wasmtime
        except ImportError as exc:  # pragma: no cover - a dependency of gatekeeper
            raise PolicyError("the wasm engine needs the wasmtime package") from exc
        if timeout <= 0:
            raise PolicyError("the wasm engine's timeout must be positive")
        self._pack = pack
        self.timeout = timeout
        self._never_release = frozenset(
            pack.data.get("catalog", {}).get("fields", {}).get("status", ())
        )
        pack.check_builtins()
        code = wasm if wasm is not None else compile_pack(pack, opa_bin=opa_bin)
        config = wasmtime.Config()
        config.epoch_interruption = True
        self._wasm_engine = wasmtime.Engine(config)
        try:
            self._module = wasmtime.Module(self._wasm_engine, code)
        except Exception as exc:
            raise PolicyError(f"the wasm engine cannot load the compiled pack: {exc}") from exc
        self._ticks = max(1, round(timeout * _TICKS_PER_SECOND)) + 1
        self._ticker: _Ticker | None = _Ticker(self._wasm_engine)
        self._local = threading.local()
        try:
            self._local.instance = _Instance(self)
        except PolicyError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise PolicyError(f"the wasm engine cannot instantiate the pack: {exc}") from exc

    @property
    def revision(self) -> str:
        return self._pack.revision

    @property
    def pack(self) -> PolicyPack:
        return self._pack

    def _instance(self) -> _Instance:
        instance: _Instance | None = getattr(self._local, "instance", None)
        if instance is None:
            if self._ticker is None:
                raise EngineError("the wasm engine is closed")
            instance = _Instance(self)
            self._local.instance = instance
        return instance

    def evaluate_raw(self, policy_input: Mapping[str, Any]) -> Any:
        """The entrypoint's value, unchecked (None when undefined)."""
        started = time.perf_counter()
        try:
            payload = json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False)
            text = self._instance().evaluate(payload.encode("utf-8"), self._ticks)
        except EngineError:
            raise
        except Exception as exc:  # wasmtime.Trap, WasmtimeError, opa_abort, ...
            # A trapped instance may be left mid-allocation: start afresh.
            self._local.instance = None
            elapsed = time.perf_counter() - started
            if "interrupt" in str(exc).lower() and elapsed >= self.timeout:
                raise EngineError(
                    f"the wasm engine did not decide within {self.timeout:g} s",
                    reason="engine_timeout",
                ) from exc
            raise EngineError(f"wasm engine failed: {type(exc).__name__}: {exc}") from exc
        try:
            parsed = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EngineError(
                f"the wasm engine returned malformed JSON: {exc}", reason="malformed_policy_output"
            ) from exc
        if not isinstance(parsed, list):
            raise EngineError(
                "the wasm engine returned a non-list result set", reason="malformed_policy_output"
            )
        if not parsed:
            return None
        first = parsed[0]
        if not isinstance(first, dict) or "result" not in first:
            raise EngineError(
                "the wasm engine returned a malformed result", reason="malformed_policy_output"
            )
        return first["result"]

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        raw = self.evaluate_raw(policy_input)
        if raw is None:
            raise EngineError("the policy decision is undefined", reason="undefined_decision")
        return check_policy_output(raw, policy_input, self._never_release)

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self._local = threading.local()
