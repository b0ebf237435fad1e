"""A read-only web view of the audit log for compliance officers (``gatekeeper ui``).

    >>> import gatekeeper, tempfile
    >>> from gatekeeper.config import load_settings
    >>> from gatekeeper.ui import LogView, Search
    >>> data_dir = tempfile.mkdtemp()
    >>> with gatekeeper.open(data_dir=data_dir) as gk:
    ...     _ = gk.decide({
    ...         "request_id": "R1", "channel": "phone",
    ...         "requester": {"id": "badge 7", "kind": "immigration_authority",
    ...                       "agency": "ICE-ERO", "identity_verified": True},
    ...         "purpose": "immigration_enforcement", "student": {"id": "S1", "age": 9},
    ...         "fields": ["enrollment_status"]})
    >>> view = LogView.open(load_settings(data_dir=data_dir))    # read-only, never creates
    >>> view.verify().ok, view.search(Search(decision="deny")).total
    (True, 1)
    >>> view.entry(0).proof_verified
    True
    >>> view.close()

Serve it (Starlette, jinja2 and uvicorn: the ``ui`` extra)::

    gatekeeper ui                                    # http://127.0.0.1:8900/, loopback
    GATEKEEPER_UI_PASSWORD=... gatekeeper ui --host 0.0.0.0 --secure-cookie   # sign-in

Pages: the overview (latest checkpoint, verification, counts), a search of
the entries, one entry with its inclusion proof checked on the server, and
the compliance reports (:mod:`gatekeeper.reports`). Every page is a GET; no
page can change the log (:class:`LogView` holds a store opened read-only).
Loopback by default; bound anywhere else it requires sign-in and refuses to
start without a configured password (:class:`UiConfig`). See ``docs/ui.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.ui._app import UiConfig, create_app
from gatekeeper.ui._auth import PasswordHash, UiError, load_password
from gatekeeper.ui._model import EntryDetail, Status
from gatekeeper.ui._search import Search, SearchPage
from gatekeeper.ui._view import LogView

__all__ = [
    "EntryDetail",
    "LogView",
    "PasswordHash",
    "Search",
    "SearchPage",
    "Status",
    "UiConfig",
    "UiError",
    "create_app",
    "load_password",
    "serve_ui",
]


def serve_ui(
    view: LogView,
    config: UiConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8900,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the view in the foreground until SIGINT/SIGTERM (uvicorn).

    ``config`` must fit ``host``: sign-in is required off loopback.
    """
    from gatekeeper._serving import serve_forever
    from gatekeeper.audit.serve import is_loopback

    if not is_loopback(host) and not config.sign_in:
        raise UiError(
            f"the web view binds to {host}, beyond loopback: it needs sign-in (UiConfig.for_host)",
            reason="config",
        )
    serve_forever(create_app(view, config), host, port, ready=ready)
