"""Policy engines: the lower layer under :class:`gatekeeper.Gatekeeper`.

The three engines (embedded regopy, an OPA server, and the pack compiled by
OPA to WebAssembly run in-process) run the same pack (``policies/``) and must
agree on every decision; all fail closed by raising
:class:`~gatekeeper.errors.EngineError`.

    >>> from gatekeeper.engines import EmbeddedEngine, load_pack
    >>> engine = EmbeddedEngine(load_pack("policies"))
    >>> engine.revision == load_pack("policies").revision
    True
"""

from gatekeeper.engines._pack import ENTRYPOINT, PolicyPack, compute_revision, load_pack
from gatekeeper.engines.base import PolicyEngine, check_policy_output
from gatekeeper.engines.embedded import EmbeddedEngine
from gatekeeper.engines.opa import OpaServerEngine
from gatekeeper.engines.shadow import ShadowEngine
from gatekeeper.engines.wasm import WasmEngine

__all__ = [
    "ENTRYPOINT",
    "EmbeddedEngine",
    "OpaServerEngine",
    "PolicyEngine",
    "PolicyPack",
    "ShadowEngine",
    "WasmEngine",
    "check_policy_output",
    "compute_revision",
    "load_pack",
]
