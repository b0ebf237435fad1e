"""Framework adapters for gatekeeper, importable as ``gatekeeper.adapters``.

Each adapter imports only its own framework, and only when it is imported;
the core imports none of them. Each is an optional extra of the package:

==================================  ==============  ========================================
module                              extra           gives
==================================  ==============  ========================================
``gatekeeper.adapters.asgi``        ``asgi``        pure ASGI middleware (Starlette, FastAPI)
``gatekeeper.adapters.fastapi``     ``fastapi``     ``gate(...)``, a per-route dependency
``gatekeeper.adapters.wsgi``        (none)          WSGI middleware
``gatekeeper.adapters.flask``       ``flask``       ``FlaskGatekeeper`` (``init_app``)
``gatekeeper.adapters.django``      ``django``      ``GatekeeperMiddleware`` (``process_view``)
``gatekeeper.adapters.sqlalchemy``  ``sqlalchemy``  a RecordSource over a Table or a select
==================================  ==============  ========================================

They share one layer (``_common``): the same decision flow, status codes and
refusal bodies everywhere (see ``docs/adapters.md``).
"""

__all__: list[str] = []
