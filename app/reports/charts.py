"""The Reports page's charts, drawn here as inline SVG (no script, nothing for the CSP to allow):
each is an image with a title and a description for screen readers (role="img"), its colours
from the stylesheet (light and dark), and the page shows its numbers as a table beside it."""

from dataclasses import dataclass

from markupsafe import Markup, escape

from app.hours import DAYS
from app.reports.service import Report

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 36


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    description: str
    svg: Markup


def _frame(chart_id: str, title: str, description: str, body: str, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    return Markup(
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title" aria-describedby="{chart_id}-desc" preserveAspectRatio="xMinYMin meet">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>'
        f"{body}</svg>"
    )


def _nice_top(value: float) -> float:
    """A round number at or above `value` for the top of an axis."""
    if value <= 0:
        return 1
    step = 10 ** (len(str(int(value))) - 1)
    for factor in (1, 2, 5, 10):
        if value <= factor * step:
            return factor * step
    return 10 * step


def _bars(
    chart_id: str, title: str, description: str, labels: list[str], series: list[tuple[str, list[float]]], unit: str
) -> Markup:
    top = _nice_top(max((value for _, values in series for value in values), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    bar = slot * 0.8 / len(series)
    parts = [
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}"/>',
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{escape(_tick(top, unit))}</text>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    every = max(1, round(len(labels) / 10))
    for index, label in enumerate(labels):
        x0 = LEFT + index * slot + slot * 0.1
        for number, (name, values) in enumerate(series):
            value = values[index]
            height = plot_h * value / top if top else 0
            parts.append(
                f'<rect class="series-{number}" x="{x0 + number * bar:.1f}" y="{TOP + plot_h - height:.1f}" '
                f'width="{max(bar - 1, 1):.1f}" height="{height:.1f}"><title>{escape(label)}: {escape(_tick(value, unit))} {escape(name)}</title></rect>'
            )
        if index % every == 0:
            parts.append(
                f'<text class="tick" x="{LEFT + index * slot + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    legend_x = LEFT
    for number, (name, _) in enumerate(series):
        parts.append(f'<rect class="series-{number}" x="{legend_x}" y="{HEIGHT - 12}" width="10" height="10"/>')
        parts.append(f'<text class="tick" x="{legend_x + 14}" y="{HEIGHT - 3}">{escape(name)}</text>')
        legend_x += 24 + 8 * len(name)
    return _frame(chart_id, title, description, "".join(parts))


def _tick(value: float, unit: str) -> str:
    if unit == "min":
        return f"{value:.0f} min" if value >= 10 or value == 0 else f"{value:.1f} min"
    return f"{value:,.0f}"


def messages_per_day(report: Report) -> Chart:
    labels = [day.day.strftime("%d %b") for day in report.per_day]
    total_in = sum(day.messages_in for day in report.per_day)
    total_out = sum(day.messages_out for day in report.per_day)
    title = "Messages per day"
    description = f"Customer messages in ({total_in:,}) and replies out ({total_out:,}) on each day of the range; the table below has each day's numbers."
    series = [
        ("in", [float(day.messages_in) for day in report.per_day]),
        ("out", [float(day.messages_out) for day in report.per_day]),
    ]
    return Chart("chart-messages", title, description, _bars("chart-messages", title, description, labels, series, ""))


def first_response_per_day(report: Report) -> Chart:
    labels = [day.day.strftime("%d %b") for day in report.per_day]
    values = [(day.first_response.median or 0) / 60 for day in report.per_day]
    title = "Median first response per day"
    description = "The median first response, in minutes, of the conversations opened or reopened each day; days without one show no bar. The table below has each day's numbers."
    series = [("median", values)]
    return Chart(
        "chart-first-response",
        title,
        description,
        _bars("chart-first-response", title, description, labels, series, "min"),
    )


def busiest_hours(report: Report) -> Chart:
    cell_w, cell_h, left, top = 26, 22, 40, 18
    width, height = left + 24 * cell_w + 4, top + 7 * cell_h + 4
    most = max((count for row in report.heat for count in row), default=0)
    parts = []
    for hour in range(0, 24, 3):
        parts.append(
            f'<text class="tick" x="{left + hour * cell_w + cell_w / 2}" y="12" text-anchor="middle">{hour:02d}</text>'
        )
    for weekday, row in enumerate(report.heat):
        y = top + weekday * cell_h
        parts.append(
            f'<text class="tick" x="{left - 4}" y="{y + cell_h * 0.7:.0f}" text-anchor="end">{DAYS[weekday][:3]}</text>'
        )
        for hour, count in enumerate(row):
            shade = 0.08 + 0.92 * count / most if most and count else 0.0
            parts.append(
                f'<rect class="{"heat" if count else "heat-empty"}" x="{left + hour * cell_w}" y="{y}" width="{cell_w - 2}" '
                f'height="{cell_h - 2}" fill-opacity="{shade:.2f}"><title>{DAYS[weekday]} {hour:02d}:00: {count:,}</title></rect>'
            )
    title = "Busiest hours of the week"
    description = f"Customer messages per weekday and hour in the team's time zone; the darkest cell is {most:,} messages. The table below has every cell's number."
    return Chart(
        "chart-heat", title, description, _frame("chart-heat", title, description, "".join(parts), width, height)
    )


def all_charts(report: Report) -> list[Chart]:
    return [messages_per_day(report), first_response_per_day(report), busiest_hours(report)]
