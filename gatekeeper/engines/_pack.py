"""Loading the Rego policy pack from a directory, checking it, hashing it.

The pack is what ``opa run --server --bundle policies/`` serves: every
``*.rego`` module (tests excluded) and every ``data.json``, whose directory
gives its place under ``data`` (``policies/catalog/data.json`` is
``data.catalog``).

The revision is a SHA-256 over the pack's content, computed the same way from
the files on disk and from what an OPA server reports it has loaded
(``GET /v1/policies`` and ``GET /v1/data/<root>``), so the two can be compared
without trusting file paths::

    >>> from gatekeeper.engines import load_pack
    >>> pack = load_pack("policies")
    >>> pack.revision.startswith("sha256:")
    True
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785

from gatekeeper.errors import PolicyError

__all__ = ["ENTRYPOINT", "PolicyPack", "compute_revision", "load_pack", "package_of"]

#: The one entrypoint of the pack, as a data path.
ENTRYPOINT = "gatekeeper/decision"

_PACKAGE_RE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_CALL_RE = re.compile(r"(?<![\w.\"])([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\s*\(")
_FUNC_DEF_RE = re.compile(r"^\s*([A-Za-z_]\w*)\s*\([^)]*\)\s*(?::=|=|if\b|\{)", re.MULTILINE)
#: A string (interpreted or raw) or a comment, whichever starts first: read in
#: one pass, so a ``#`` inside a string does not hide the rest of its line, and
#: a quote inside a comment does not open a string.
_STRING_OR_COMMENT_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')


#: ``with <target> as <value>``: the value may name a function (a built-in put
#: in place of another), which is a call the call pattern does not see.
_WITH_AS_RE = re.compile(r"\bwith\s+\S+\s+as\s+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\b(?!\s*[\[{(])")


def _code_only(source: str) -> str:
    """``source`` with comments removed and every string literal emptied (``""``),
    its line breaks kept, so line numbers still point into the module."""

    def blank(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("#"):
            return ""
        return '""' + "\n" * token.count("\n")

    return _STRING_OR_COMMENT_RE.sub(blank, source)


def _template_string_lines(source: str) -> list[int]:
    """Lines of the template strings (``$"…{expr}…"``, ``$`…{expr}…```): their
    ``{…}`` parts are code this check would read as text, and rego-cpp does
    not read them at all."""
    return [
        source.count("\n", 0, m.start()) + 1
        for m in _STRING_OR_COMMENT_RE.finditer(source)
        if not m.group(0).startswith("#") and m.start() > 0 and source[m.start() - 1] == "$"
    ]


#: Built-ins whose behaviour differs between rego-cpp and OPA, or which do not
#: exist in rego-cpp: the pack must not call them (SIS-REFERENCE.md 3.3).
FORBIDDEN_BUILTIN_PREFIXES: tuple[str, ...] = (
    "time.",
    "net.",
    "http.",
    "json.match_schema",
    "json.verify_schema",
    "strings.render_template",
    "rego.",
    "providers.",
    "graphql.",
    "crypto.x509.parse_and_verify_certificates_with_options",
    "opa.runtime",
    "rand.",
    "uuid.",
    "sprintf",
    "trace",
    "print",
    "to_number",
)

_KEYWORDS = frozenset(
    {"if", "contains", "in", "not", "some", "every", "with", "else", "import", "set"}
)


def package_of(source: str) -> str:
    """The package name a Rego module declares ("" if none)."""
    match = _PACKAGE_RE.search(_code_only(source))
    return match.group(1) if match else ""


def _is_test_package(source: str) -> bool:
    return package_of(source).endswith("_test")


def compute_revision(modules: Iterable[str], data: Mapping[str, Any]) -> str:
    """The pack revision: SHA-256 over the module texts (order-free) and the data.

    Test modules (packages ending in ``_test``) are ignored, so adding a test
    does not change the revision of the rules that decide.
    """
    digests = sorted(
        hashlib.sha256(text.encode("utf-8")).hexdigest()
        for text in modules
        if not _is_test_package(text)
    )
    h = hashlib.sha256(b"gatekeeper-pack/1\n")
    for digest in digests:
        h.update(digest.encode("ascii") + b"\n")
    h.update(b"data\n")
    h.update(rfc8785.dumps(dict(data)))
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True, slots=True)
class PolicyPack:
    """A loaded policy pack: modules by relative path, merged data, revision."""

    root: Path
    modules: Mapping[str, str]
    data: Mapping[str, Any]
    revision: str

    def builtin_calls(self) -> set[str]:
        """Every function name the pack calls that it does not define itself."""
        return set(self.builtin_call_sites())

    def builtin_call_sites(self) -> dict[str, str]:
        """Each function name the pack calls that it does not define itself, and
        where it is first called (``path:line``, in module path order)."""
        defined: set[str] = set()
        called: dict[str, str] = {}
        for rel in sorted(self.modules):
            text = _code_only(self.modules[rel])
            defined.update(_FUNC_DEF_RE.findall(text))
            for match in _CALL_RE.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                called.setdefault(match.group(1), f"{rel}:{line}")
            for match in _WITH_AS_RE.finditer(text):
                name = match.group(1)
                if _forbidden(name):  # a value there may be a local name, not a call
                    line = text.count("\n", 0, match.start()) + 1
                    called.setdefault(name, f"{rel}:{line}")
        return {
            name: where
            for name, where in called.items()
            if name not in defined and name not in _KEYWORDS and not name.startswith("_")
        }

    def check_builtins(self, is_builtin: Any = None) -> None:
        """Raise PolicyError if the pack calls a built-in the engines disagree on.

        ``is_builtin`` (a callable, e.g. regopy's ``Interpreter.is_builtin``)
        also rejects any call rego-cpp does not implement at all: rego-cpp
        would otherwise evaluate it to *undefined* instead of failing.
        """
        problems: list[str] = []
        for rel in sorted(self.modules):
            for line in _template_string_lines(self.modules[rel]):
                problems.append(
                    f"a template string ({rel}:{line}): rego-cpp does not read it, and "
                    "what it interpolates escapes this check (build the text with concat)"
                )
        for name, where in sorted(self.builtin_call_sites().items()):
            if _forbidden(name):
                problems.append(f"{name} ({where}): differs between rego-cpp and OPA, not allowed")
            elif is_builtin is not None and not is_builtin(name):
                problems.append(f"{name} ({where}): not a built-in of the embedded engine")
        if problems:
            raise PolicyError("policy pack uses unsupported built-ins: " + "; ".join(problems))


def _forbidden(name: str) -> bool:
    return any(name == p.rstrip(".") or name.startswith(p) for p in FORBIDDEN_BUILTIN_PREFIXES)


def _merge(target: dict[str, Any], path: tuple[str, ...], value: Any, where: Path) -> None:
    node = target
    for key in path:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise PolicyError(f"{where}: data path {'/'.join(path)} collides with a value")
        node = child
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: a data.json must hold a JSON object")
    for key, item in value.items():
        if key in node:
            raise PolicyError(f"{where}: data key {key!r} defined twice")
        node[key] = item


def load_pack(root: str | Path) -> PolicyPack:
    """Load and check the pack under ``root``.

    Raises PolicyError when the directory has no modules, a module is not
    Rego v1 (``import rego.v1``), or a data file is not a JSON object.
    """
    base = Path(root)
    if not base.is_dir():
        raise PolicyError(f"policy directory not found: {base}")
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    try:
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(base).as_posix()
            if path.suffix == ".rego":
                source = path.read_text(encoding="utf-8")
                if _is_test_package(source):
                    continue
                if not re.search(r"^\s*import\s+rego\.v1\s*$", source, re.MULTILINE):
                    raise PolicyError(f"{rel}: not a Rego v1 module (missing 'import rego.v1')")
                modules[rel] = source
            elif path.name == "data.json":
                value = json.loads(path.read_text(encoding="utf-8"))
                _merge(data, tuple(path.relative_to(base).parent.parts), value, path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(f"cannot read policy pack {base}: {exc}") from exc
    if not modules:
        raise PolicyError(f"no Rego modules in {base}")
    pack = PolicyPack(
        root=base,
        modules=modules,
        data=data,
        revision=compute_revision(modules.values(), data),
    )
    pack.check_builtins()
    return pack
