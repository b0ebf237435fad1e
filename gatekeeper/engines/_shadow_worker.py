"""The shadow candidate's child process: ``python -m gatekeeper.engines._shadow_worker DIR``.

Protocol (JSON lines): the worker loads the pack in ``DIR`` into an
:class:`~gatekeeper.engines.EmbeddedEngine` and writes
``{"revision": "sha256:…"}`` (or ``{"fatal": "…"}``); then for each line
``{"input": {…}}`` read on standard input it writes ``{"ok": {decision}}``
or ``{"error": "<reason code>"}``. It exits when standard input closes.
Nothing but reason codes leaves it: no message can carry request values.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any


def _send(out: IO[str], value: dict[str, Any]) -> None:
    out.write(json.dumps(value, ensure_ascii=False) + "\n")
    out.flush()


def main(argv: list[str]) -> int:
    out = sys.stdout
    try:
        # The lowest CPU priority: the live decisions come first.
        os.nice(19)
    except OSError:
        pass
    try:
        from gatekeeper.engines import EmbeddedEngine, load_pack

        # The parent bounds each comparison (ShadowEngine.timeout); a deadline
        # here would end shadowing for one slow evaluation at nice 19.
        engine = EmbeddedEngine(load_pack(argv[0]), timeout=60.0)
    except Exception as exc:  # anything: the parent stops shadowing
        _send(out, {"fatal": f"{type(exc).__name__}: {exc}"})
        return 1
    _send(out, {"revision": engine.revision})
    from gatekeeper.errors import GatekeeperError

    for line in sys.stdin:
        try:
            policy_input = json.loads(line)["input"]
            _send(out, {"ok": engine.evaluate(policy_input)})
        except GatekeeperError as exc:
            _send(out, {"error": exc.reason})
        except Exception:
            _send(out, {"error": "shadow_worker_error"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
