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

__all__ = ["get_logger", "raised_at"]


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


def raised_at(exc: BaseException) -> str:
    """``TypeName at file.py:line`` of the innermost frame of ``exc``: where an
    error came from, for the operational log, without its message (which may
    quote record values)."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return type(exc).__name__
    code = frame.tb_frame.f_code
    return f"{type(exc).__name__} at {code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}"
