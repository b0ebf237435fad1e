"""The built-ins a policy may call: those rego-cpp (regopy) and OPA are known to agree on.

    >>> from gatekeeper.policy.builtins import ALLOWED_BUILTINS, capabilities
    >>> "object.get" in ALLOWED_BUILTINS, "time.parse_rfc3339_ns" in ALLOWED_BUILTINS
    (True, False)

The list is explicit: a built-in is added only with evidence that both
engines give the same answers, and ``tests/test_policy_tools.py`` proves
it for every entry (samples evaluated in regopy and by ``opa eval``,
compared as JSON). ``gatekeeper policy check`` enforces it with OPA's own
type checker: ``opa check --strict --capabilities <file>``, where the
capabilities file is OPA's current one with the built-ins cut down to this
list, so a call to anything else is reported as ``undefined function``
with its file and line. Names are OPA's internal names: operators appear as
``eq`` (``=``), ``assign`` (``:=``), ``equal`` (``==``), ``internal.member_2``
(``x in xs``), ``or`` (set ``|``), ``and`` (set ``&``), ``minus`` (``-``).

docs/policy-builtins.md explains each entry and the known traps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ALLOWED_BUILTINS", "KNOWN_DIVERGENT", "capabilities"]

#: name -> why it is allowed (what was checked). Keep sorted; document in docs/policy-builtins.md.
ALLOWED_BUILTINS: Mapping[str, str] = {
    "and": "set intersection `a & b`; sets compared as sorted arrays",
    "array.concat": "used by the pack; differential samples",
    "array.slice": "used by the pack; out-of-range bounds clamp in both",
    "assign": "the `:=` operator",
    "concat": "joining an ARRAY of strings (on a set the order differs: see KNOWN_DIVERGENT)",
    "count": "arrays, sets, objects and strings (code points)",
    "endswith": "ASCII and UTF-8 strings",
    "eq": "the `=` unification operator",
    "equal": "the `==` operator",
    "gt": "numbers and strings",
    "gte": "numbers and strings",
    "internal.member_2": "`x in xs`",
    "internal.member_3": "`k, v in xs`",
    "is_array": "type test",
    "is_boolean": "type test",
    "is_null": "type test",
    "is_number": "type test",
    "is_object": "type test",
    "is_set": "type test",
    "is_string": "type test",
    "lt": "numbers and strings",
    "lte": "numbers and strings",
    "max": "numbers in arrays and sets; undefined on an empty collection in both",
    "min": "numbers in arrays and sets; undefined on an empty collection in both",
    "minus": "integer subtraction and set difference",
    "mul": "integer multiplication",
    "neq": "the `!=` operator",
    "object.get": "with a key or a path array, and a default",
    "object.keys": "returns a set of keys",
    "object.remove": "keys given as an array or a set",
    "or": "set union `a | b`",
    "plus": "integer addition",
    "regex.match": "RE2 syntax the pack uses: anchors, alternation, classes (SIS-REFERENCE 3.3)",
    "sort": "arrays and sets of numbers or of strings",
    "split": "ASCII and UTF-8 separators",
    "startswith": "ASCII and UTF-8 strings",
    "substring": "code-point offsets on Unicode strings (SIS-REFERENCE 3.3)",
    "sum": "integers in arrays and sets",
}

#: Built-ins or uses known to differ (measured): never allowed, or allowed only as noted.
KNOWN_DIVERGENT: Mapping[str, str] = {
    "time.*": "rego-cpp: time.parse_rfc3339_ns is undefined for a `Z` suffix (fail open)",
    "net.*": "not in rego-cpp (undefined, or an error with strict built-in errors)",
    "http.send": "not in rego-cpp",
    "sprintf": "rego-cpp quotes %v strings without escaping; the wrapper then fails to parse",
    "to_number": 'rego-cpp: to_number("1e400") breaks the Python wrapper',
    "object.union": "nested objects: OPA merges recursively, rego-cpp replaces the nested object",
    "indexof": 'indexof("", "") is 0 in rego-cpp, undefined in OPA',
    "concat on a set": "rego-cpp joins a set in insertion order, OPA in sorted order",
    "array comprehension over a set": "rego-cpp iterates a set in insertion order, OPA sorted",
    "some k, v in xs inside a comprehension": "rejected by rego-cpp's parser (Invalid collection)",
    "rego.metadata.*": "not in rego-cpp",
    "json.match_schema": "not in rego-cpp",
    "strings.render_template": "not in rego-cpp",
}


def capabilities(
    current: Mapping[str, Any], allowed: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """OPA's capabilities document ``current`` (``opa capabilities --current``)
    with its built-ins cut down to ``allowed`` (default :data:`ALLOWED_BUILTINS`)."""
    names = set(ALLOWED_BUILTINS if allowed is None else allowed)
    out: dict[str, Any] = json.loads(json.dumps(dict(current)))
    out["builtins"] = [b for b in out.get("builtins", []) if b.get("name") in names]
    return out
