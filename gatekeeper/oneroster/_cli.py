"""``gatekeeper proxy``: the OneRoster proxy in front of a SIS.

gatekeeper proxy --upstream http://sis.internal:8600 --config proxy.toml --port 8700
gatekeeper --data-dir /var/lib/gatekeeper proxy --config proxy.toml

``--config`` here is the proxy's file (clients, field map; docs/oneroster-proxy.md).
The Gatekeeper's own settings come from the global ``--config`` given before
``proxy``, else from the proxy file's ``[gatekeeper]`` section.
"""

from __future__ import annotations

import argparse

from gatekeeper.errors import GatekeeperError

__all__ = ["add_commands"]


def _cmd_proxy(args: argparse.Namespace) -> int:
    try:
        from gatekeeper.oneroster.proxy import proxy_settings, run_proxy
    except ImportError as exc:
        raise GatekeeperError(
            f"the proxy needs the proxy extra (pip install 'gatekeeper[proxy]'): {exc}"
        ) from exc
    from gatekeeper.oneroster.config import load_proxy_config
    from gatekeeper.oneroster.mapping import ONEROSTER_PREFIX

    config = load_proxy_config(args.proxy_config)
    upstream = config.upstream_base(args.upstream)
    settings = proxy_settings(
        config,
        args.config,
        data_dir=args.data_dir,
        policy_dir=args.policy_dir,
        timezone=args.timezone,
    )

    def ready(url: str) -> None:
        print(
            f"proxy: {url}{ONEROSTER_PREFIX} -> {upstream} "
            f"({len(config.clients)} clients; audit log in {settings.data_dir})",
            flush=True,
        )

    run_proxy(
        config,
        upstream=upstream,
        settings=settings,
        host=args.host,
        port=args.port,
        ready=ready,
    )
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    """Register ``proxy`` on the ``gatekeeper`` command's subparsers.

    ``common`` is not a parent here: its ``--config`` (the Gatekeeper settings
    file) would collide with the proxy's own ``--config``.
    """
    proxy = sub.add_parser(
        "proxy", help="serve the OneRoster 1.2 proxy: decide, audit and redact every request"
    )
    proxy.add_argument(
        "--config", dest="proxy_config", required=True, help="proxy configuration (TOML)"
    )
    proxy.add_argument(
        "--upstream", default=None, help="the SIS's OneRoster base URL (default: [proxy] upstream)"
    )
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=8700, help="0: an ephemeral port")
    for flag in ("--data-dir", "--policy-dir", "--timezone"):
        proxy.add_argument(flag, default=argparse.SUPPRESS)
    proxy.set_defaults(func=_cmd_proxy)
