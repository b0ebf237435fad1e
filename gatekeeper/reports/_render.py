"""A report as self-contained HTML, as CSV, as JSON; and writing them to files.

HTML: one file, CSS inline, charts inline SVG, no script at all (a Content
Security Policy forbids any), nothing fetched at view time; printable (print
CSS). Jinja2 with autoescape on: entries hold requesters' own strings.

CSV: long format, one value a row: ``section,key,measure,value``. The
``report``, ``checkpoint`` and ``summary`` sections come first, then each
table (``section`` = table name, ``key`` = the row's first cell,
``measure`` = the column), then the notes. A text value that a spreadsheet
would run as a formula (starting with ``= + - @``, a tab or a carriage
return) is written with a leading ``'``.

JSON: :meth:`Report.to_dict`, indented, UTF-8.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.reports._fields import LABELS, label
from gatekeeper.reports._model import Cell, Report, ReportError

if TYPE_CHECKING:
    from jinja2 import Environment

__all__ = ["FORMATS", "render", "render_csv", "render_html", "render_json", "write_report"]

FORMATS = ("html", "csv", "json")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@lru_cache(maxsize=1)
def _environment() -> Environment:
    try:
        from jinja2 import Environment, FileSystemLoader, StrictUndefined
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ReportError(
            "HTML reports need jinja2: pip install 'gatekeeper[reports]'",
            reason="report_dependency_missing",
        ) from exc
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["label"] = label
    env.filters["num"] = _number
    env.globals["LABELS"] = LABELS
    return env


def _number(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_html(report: Report) -> str:
    from markupsafe import Markup

    from gatekeeper.reports._charts import chart_svg

    charts = {
        chart.name: Markup(chart_svg(chart, salt=f"{report.kind}-{chart.name}"))  # noqa: S704 - matplotlib's own SVG
        if chart.months
        else None
        for chart in report.charts
    }
    template = _environment().get_template(f"{report.kind}.html.j2")
    return template.render(report=report, p=report.provenance, charts=charts)


def _csv_safe(value: Cell | bool) -> str | int:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_rows(report: Report) -> Iterator[tuple[str, str, str, Cell | bool]]:
    p = report.provenance
    period = report.period
    yield ("report", "kind", "", report.kind)
    yield ("report", "title", "", report.title)
    if report.subject is not None:
        yield ("report", "subject", "", report.subject)
    yield ("report", "generated_at", "", report.to_dict()["generated_at"])
    yield ("report", "period_from", "", None if period.start is None else period.start.isoformat())
    yield ("report", "period_to", "", None if period.end is None else period.end.isoformat())
    yield ("report", "timezone", "", period.timezone)
    yield ("checkpoint", "origin", "", p.origin)
    yield ("checkpoint", "size", "", p.size)
    yield ("checkpoint", "root", "", p.root_base64)
    yield ("checkpoint", "verified", "", p.verified)
    yield ("checkpoint", "log_verified", "", p.log_verified)
    yield ("checkpoint", "entries_match_checkpoint", "", p.entries_match)
    yield ("checkpoint", "verification", "", p.verification)
    for number, problem in enumerate(p.problems, 1):
        yield ("checkpoint", "problem", str(number), problem)
    for key, value in report.summary.items():
        yield ("summary", key, "", value)
    for table in report.tables:
        for row in table.rows:
            key = "" if row[0] is None else str(row[0])
            for column, value in zip(table.columns[1:], row[1:], strict=True):
                yield (table.name, key, column, value)
    for number, note in enumerate(report.notes, 1):
        yield ("note", str(number), "", note)
    for number, note in enumerate(report.staff_notes, 1):
        yield ("staff_note", str(number), "", note)


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(("section", "key", "measure", "value"))
    for section, key, measure, value in _csv_rows(report):
        writer.writerow((_csv_safe(section), _csv_safe(key), _csv_safe(measure), _csv_safe(value)))
    return buffer.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"


def render(report: Report, fmt: str) -> bytes:
    """The report in one format (``html``, ``csv`` or ``json``), UTF-8."""
    renderers: dict[str, Any] = {"html": render_html, "csv": render_csv, "json": render_json}
    if fmt not in renderers:
        raise ReportError(f"format must be one of {FORMATS}, not {fmt!r}")
    text: str = renderers[fmt](report)
    return text.encode("utf-8")


def write_report(report: Report, fmt: str, out: str | Path) -> list[Path]:
    """Write the report; returns the files written.

    ``fmt`` ``"all"``: ``out`` is a directory (created), holding
    ``<kind>.html``, ``<kind>.csv`` and ``<kind>.json``. One format: ``out`` is
    a file, or an existing directory (or a path ending in ``/``) to write
    ``<kind>.<format>`` into.
    """
    target = Path(out)
    formats = FORMATS if fmt == "all" else (fmt,)
    as_dir = fmt == "all" or target.is_dir() or str(out).endswith(("/", "\\"))
    written = []
    try:
        if as_dir:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
        for one in formats:
            data = render(report, one)
            path = target / f"{report.kind}.{one}" if as_dir else target
            path.write_bytes(data)
            written.append(path)
    except OSError as exc:
        raise ReportError(f"cannot write the report to {out}: {exc.strerror or exc}") from exc
    return written
