"""Redacting a OneRoster collection while it streams: one record in memory at a time.

    >>> from gatekeeper.oneroster.stream import CollectionRedactor
    >>> out = CollectionRedactor("users", lambda r: {"sourcedId": r["sourcedId"]})
    >>> out.feed(b'{"users": [{"sourcedId": "a", "ssn": "1"}, {"sourc')
    b'{"users":[{"sourcedId":"a"}'
    >>> out.feed(b'edId": "b"}]}') + out.finish()
    b',{"sourcedId":"b"}]}'

The upstream body is parsed incrementally (ijson, push mode); each complete
record under ``key`` goes through ``redact`` and out, so the proxy's memory
does not grow with the page size. Other top-level keys are dropped. A body
that is not JSON, or not an object, raises :class:`StreamError` (the proxy
then aborts the response: the client sees a truncated body, never an
unredacted one).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import ijson

from gatekeeper.errors import GatekeeperError

__all__ = ["CollectionRedactor", "StreamError"]


class StreamError(GatekeeperError):
    """The upstream collection body is not the JSON it should be."""

    reason = "upstream_malformed"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class CollectionRedactor:
    """Feed upstream bytes, get redacted output bytes (``{"<key>":[...]}``)."""

    def __init__(self, key: str, redact: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> None:
        self.key = key
        self.redact = redact
        self.count = 0
        self._opened = False
        self._events: list[Any] = ijson.sendable_list()
        self._items: list[Any] = ijson.sendable_list()
        self._checked = False
        # Two coroutines over the same bytes: the top-level shape, and the records.
        self._shape = ijson.parse_coro(self._events)
        self._records = ijson.items_coro(self._items, f"{key}.item", use_float=True)

    def _check_shape(self) -> None:
        # Only the first event matters: the document must be an object.
        if not self._checked and self._events:
            _prefix, event, _value = self._events[0]
            if event != "start_map":
                raise StreamError("the upstream collection is not a JSON object")
            self._checked = True
            self._shape = None
        self._events.clear()

    def _emit(self) -> bytes:
        parts: list[bytes] = []
        if not self._opened:
            parts.append(b'{"' + self.key.encode("utf-8") + b'":[')
            self._opened = True
        for item in self._items:
            if not isinstance(item, Mapping):
                continue  # a non-object in the list carries nothing releasable
            if self.count:
                parts.append(b",")
            parts.append(_dumps(self.redact(item)))
            self.count += 1
        self._items.clear()
        return b"".join(parts)

    def feed(self, chunk: bytes) -> bytes:
        """Parse one chunk; return the redacted output it completes (maybe empty)."""
        try:
            if self._shape is not None:
                self._shape.send(chunk)
                self._check_shape()
            self._records.send(chunk)
        except ijson.JSONError as exc:
            raise StreamError(f"the upstream body is not valid JSON: {exc}") from exc
        return self._emit()

    def finish(self) -> bytes:
        """The end of the body: the last records and the closing brackets."""
        try:
            if self._shape is not None:
                self._shape.close()
                self._check_shape()
            self._records.close()
        except ijson.JSONError as exc:
            raise StreamError(f"the upstream body is not valid JSON: {exc}") from exc
        if not self._checked:
            raise StreamError("the upstream body is empty")
        return self._emit() + b"]}"
