"""Charts as inline SVG, drawn by matplotlib (imported only here, only when needed).

No pyplot and no global state: each chart is a :class:`matplotlib.figure.Figure`
on an Agg canvas, saved as SVG with text kept as text (so the numbers and
labels are in the page's DOM), a fixed hash salt and no date (the same data
gives the same bytes), and math text off (labels are never interpreted).
Chart labels are months, decision words and requester kinds: closed lists,
never a requester's own words; matplotlib escapes them as XML anyway.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from gatekeeper.reports._model import Chart, ReportError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["chart_svg"]

#: Refused, escalated, complied; then a colour-blind-safe set for other series.
_DECISION_COLOURS = {
    "refused": "#b2182b",
    "denied": "#b2182b",
    "escalated": "#f4a582",
    "complied": "#2166ac",
    "permitted": "#2166ac",
}
_OTHER_COLOURS = [
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
    "#a6761d",
    "#666666",
]


def _figure() -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ReportError(
            "HTML reports need matplotlib: pip install 'gatekeeper[reports]'",
            reason="report_dependency_missing",
        ) from exc
    figure = Figure(figsize=(9.0, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def chart_svg(chart: Chart, *, salt: str) -> str:
    """The ``<svg>`` element of a stacked monthly bar chart."""
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": f"gatekeeper-{salt}",
            "text.parse_math": False,
            "font.size": 9.0,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        figure = _figure()
        axes = figure.add_subplot()
        positions = list(range(len(chart.months)))
        bottom = [0] * len(chart.months)
        others = iter(_OTHER_COLOURS * 4)
        for label, values in chart.series:
            colour = _DECISION_COLOURS.get(label) or next(others)
            axes.bar(positions, values, bottom=bottom, label=label, color=colour, width=0.7)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for x, total in zip(positions, bottom, strict=True):
            if total:
                axes.annotate(
                    str(total),
                    (x, total),
                    ha="center",
                    va="bottom",
                    xytext=(0, 2),
                    textcoords="offset points",
                    fontsize=8,
                )
        axes.set_xticks(positions, labels=list(chart.months))
        axes.set_xlim(-0.6, max(len(positions), 6) - 0.4)  # a lone month is not a wall
        if len(chart.months) > 12:
            for tick in axes.get_xticklabels():
                tick.set_rotation(60)
                tick.set_horizontalalignment("right")
        axes.set_ylabel(chart.ylabel)
        axes.set_title(chart.title, loc="left", fontsize=10)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylim(0, max([*bottom, 1]) * 1.15)
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    start = svg.find("<svg")
    if start < 0:  # pragma: no cover - matplotlib always writes one
        raise ReportError("matplotlib wrote no <svg> element")
    return svg[start:].strip()
