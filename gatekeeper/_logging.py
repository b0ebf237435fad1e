"""Operational logs: structlog over the standard library's ``logging``.

JSON lines, separate from the audit log, never carrying record values (the
callers pass ids, codes and reasons only). The pipeline is built explicitly
here, not from structlog's global configuration, so embedding applications
keep theirs; the output goes wherever the application's ``logging`` sends
the ``gatekeeper`` logger (stderr for warnings when unconfigured).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger"]


def get_logger(name: str = "gatekeeper") -> Any:
    """A structlog logger writing JSON lines to the stdlib logger ``name``."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
