"""The OneRoster 1.2 sidecar proxy: every rostering GET decided, audited and redacted.

    gatekeeper proxy --upstream http://127.0.0.1:8600 --config examples/proxy.toml

or, from Python (``pip install 'gatekeeper[proxy]'``)::

    from gatekeeper.oneroster import start_proxy
    proxy = start_proxy("examples/proxy.toml", upstream=sis_url, data_dir=".gatekeeper")
    ...                                   # proxy.base_url, proxy.gatekeeper
    proxy.stop()

Modules: ``config`` (clients, upstream, field map; TOML), ``mapping`` (OneRoster
paths to catalog fields, routes, the record redactor), ``query`` (filter,
sort, fields, paging), ``stream`` (incremental redaction of collections),
``proxy`` (the Starlette app). Only ``proxy`` and ``stream`` need the
``proxy`` extra (starlette, httpx, uvicorn, ijson); they are imported on
first use of the names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatekeeper.oneroster.config import ClientConfig, ProxyConfig, load_proxy_config
from gatekeeper.oneroster.mapping import FieldMapping

if TYPE_CHECKING:
    from gatekeeper.oneroster.proxy import (
        OneRosterProxy,
        ProxyHandle,
        open_proxy,
        run_proxy,
        start_proxy,
    )

__all__ = [
    "ClientConfig",
    "FieldMapping",
    "OneRosterProxy",
    "ProxyConfig",
    "ProxyHandle",
    "load_proxy_config",
    "open_proxy",
    "run_proxy",
    "start_proxy",
]

_LAZY = frozenset({"OneRosterProxy", "ProxyHandle", "open_proxy", "run_proxy", "start_proxy"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from gatekeeper.oneroster import proxy

        return getattr(proxy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
