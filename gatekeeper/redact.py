"""Redaction: only the allowed fields of a record leave, nothing the policy never saw.

    >>> from gatekeeper.redact import Redactor
    >>> r = Redactor({"givenName": "name", "demographics.birthDate": "dob"})
    >>> r.redact({"givenName": "Ana", "ssn": "x", "demographics": {"birthDate": "2011-06-02",
    ...           "countryOfBirthCode": "MX"}}, ["name", "dob"])
    {'givenName': 'Ana', 'demographics': {'birthDate': '2011-06-02'}}

A key is released only when its catalog name (through the field map: a
dotted path such as ``demographics.birthDate``; for a top-level key, else
the key itself) is in the allowed fields; then its whole value goes. A nested object whose own name
is not allowed is searched key by key, and kept only if something in it is
allowed. Lists of objects (bulk results, nested collections) are redacted
element by element. Everything else is dropped: an unknown key is never
passed through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["Redactor"]


class Redactor:
    """Maps record keys to field-catalog names and keeps only allowed ones."""

    def __init__(self, field_map: Mapping[str, str] | None = None) -> None:
        self.field_map = dict(field_map or {})

    def catalog_name(self, path: str, key: str) -> str | None:
        """The field-catalog name of ``key`` at dotted ``path``.

        A top-level key may name its field itself (``grades``); a nested key
        counts only when its dotted path is mapped: ``guardian.name`` or
        ``metadata.name`` is not the student's ``name``.
        """
        if path in self.field_map:
            return self.field_map[path]
        if "." in path:
            return None
        return self.field_map.get(key, key)

    def _value(self, value: Any, allowed: frozenset[str], path: str) -> tuple[bool, Any]:
        if isinstance(value, Mapping):
            kept = self._object(value, allowed, path)
            return bool(kept), kept
        if isinstance(value, list | tuple):
            items = []
            for item in value:
                if isinstance(item, Mapping):
                    kept = self._object(item, allowed, path)
                    if kept:
                        items.append(kept)
            return bool(items), items
        return False, None

    def _object(
        self, record: Mapping[str, Any], allowed: frozenset[str], prefix: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in record.items():
            if not isinstance(key, str):
                continue
            path = f"{prefix}.{key}" if prefix else key
            if self.catalog_name(path, key) in allowed:
                out[key] = value
                continue
            keep, kept = self._value(value, allowed, path)
            if keep:
                out[key] = kept
        return out

    def redact(self, record: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
        """One record, reduced to its allowed fields."""
        return self._object(record, frozenset(allowed), "")

    def redact_many(
        self, records: Sequence[Mapping[str, Any]], allowed: Iterable[str]
    ) -> list[dict[str, Any]]:
        """A bulk result, each record reduced to its allowed fields."""
        fields = frozenset(allowed)
        return [self._object(record, fields, "") for record in records]
