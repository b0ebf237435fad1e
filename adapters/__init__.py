"""Framework adapters for gatekeeper, importable as ``gatekeeper.adapters``.

Each adapter imports only its own framework, and only when it is imported;
the core imports none of them.
"""

__all__: list[str] = []
