"""The embedded engine: regopy (Microsoft rego-cpp) in-process.

The pack is compiled once into a bundle per thread (``Interpreter.build``
with the entrypoint) and each decision runs ``query_bundle_entrypoint``.
regopy's interpreter is not documented as thread-safe, so each thread gets
its own interpreter and compiled bundle; compilation happens on a thread's
first decision.

    >>> from gatekeeper.engines import EmbeddedEngine, load_pack
    >>> engine = EmbeddedEngine(load_pack("policies"))
    >>> engine.name
    'embedded'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import regopy

from gatekeeper.engines._pack import ENTRYPOINT, PolicyPack
from gatekeeper.engines.base import check_policy_output
from gatekeeper.errors import EngineError, PolicyError

__all__ = ["EmbeddedEngine"]


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


class EmbeddedEngine:
    """Decides in-process with regopy; fails closed with EngineError."""

    name = "embedded"

    def __init__(self, pack: PolicyPack) -> None:
        self._pack = pack
        self._never_release = frozenset(
            pack.data.get("catalog", {}).get("fields", {}).get("status", ())
        )
        self._local = threading.local()
        try:
            probe = regopy.Interpreter()
            pack.check_builtins(probe.is_builtin)
            self._local.compiled = _Compiled(pack)
        except PolicyError:
            raise
        except Exception as exc:  # regopy raises RegoError and others
            raise PolicyError(f"the embedded engine cannot compile the pack: {exc}") from exc

    @property
    def revision(self) -> str:
        return self._pack.revision

    @property
    def pack(self) -> PolicyPack:
        return self._pack

    def _compiled(self) -> _Compiled:
        compiled: _Compiled | None = getattr(self._local, "compiled", None)
        if compiled is None:
            compiled = _Compiled(self._pack)
            self._local.compiled = compiled
        return compiled

    def evaluate_raw(self, policy_input: Mapping[str, Any]) -> Any:
        """The entrypoint's value, unchecked (None when undefined)."""
        try:
            compiled = self._compiled()
            # ensure_ascii=False: rego-cpp does not decode \uXXXX escapes in input
            # strings (it would compare and match the escape text), so the
            # input goes as UTF-8, the way OPA reads it.
            compiled.interpreter.set_input_term(
                json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False)
            )
            output = compiled.interpreter.query_bundle_entrypoint(compiled.bundle, ENTRYPOINT)
            if not output.ok():
                raise EngineError(f"embedded engine error: {output}")
            text = str(output)
            if text == "undefined":
                return None
            parsed = json.loads(text)
        except EngineError:
            raise
        except Exception as exc:  # RegoError, JSONDecodeError from the wrapper, ...
            raise EngineError(f"embedded engine failed: {type(exc).__name__}: {exc}") from exc
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
        self._local = threading.local()
