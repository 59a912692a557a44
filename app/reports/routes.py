"""The Reports page (/reports): figures for a range in the team's zone and the filters, as GET
query arguments; its tables as CSV; the events export (admins, audited). Every logged-in person
may see the page: admins everyone's rows, agents only their own."""

import tempfile

from flask import Blueprint, Response, abort, render_template, request, send_file, stream_with_context
from flask_login import current_user

from app import audit, export
from app.reports import charts, events_export, service
from app.web.access import admin_required
from app.web.request_args import date_arg, id_arg

bp = Blueprint("reports", __name__)


def chosen() -> tuple[service.Range, service.Filters]:
    """The range and filters the query string names; a 400 for a range that can't be."""
    preset = request.args.get("range", "this_week")
    try:
        period = service.date_range(preset, date_arg("from"), date_arg("to"))
    except service.RangeRefused as refused:
        abort(400, str(refused))
    person = id_arg("person")
    if not current_user.is_admin and person is not None and person != current_user.id:
        abort(403)
    filters = service.Filters(
        our_number=request.args.get("number", "").strip() or None,
        channel=request.args.get("channel", "").strip() or None,
        user_id=person,
        label_id=id_arg("label"),
        business_hours=request.args.get("business") == "1",
    )
    return period, filters


def figures() -> service.Report:
    period, filters = chosen()
    return service.report(period, filters, current_user.id, current_user.is_admin)


@bp.get("/reports")
def page():
    result = figures()
    return render_template(
        "reports/page.html",
        report=result,
        choices=service.choices(),
        presets=service.PRESETS,
        definitions=service.DEFINITIONS,
        charts=charts.all_charts(result),
        duration=service.duration,
        amount=service.amount,
        percent=service.percent,
        args={name: value for name, value in request.args.items() if value},
    )


@bp.get("/reports.csv")
def tables_csv():
    result = figures()
    body = (
        "\ufeff"
        + export.csv_line(("table", "row", "column", "value"))
        + "".join(export.csv_line([export.safe_cell(cell) for cell in row]) for row in service.table_rows(result))
    )
    name = f"sms-inbox-report-{result.range.first_day}-{result.range.last_day}.csv"
    return Response(
        body.encode(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


def audited_events_query(file_format: str):
    period, _ = chosen()
    query = events_export.events_query(period.start, period.end)
    audit.record(
        "events_export",
        {
            "from": period.first_day.isoformat(),
            "to": period.last_day.isoformat(),
            "format": file_format,
            "rows": events_export.count(query),
        },
    )
    return query, period


@bp.get("/reports/events.csv")
@admin_required
def events_csv():
    query, period = audited_events_query("csv")
    return Response(
        stream_with_context(events_export.csv_chunks(query)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="sms-inbox-events-{period.first_day}-{period.last_day}.csv"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/reports/events.xlsx")
@admin_required
def events_xlsx():
    query, period = audited_events_query("xlsx")
    output = tempfile.TemporaryFile()
    try:
        events_export.xlsx_file(query, output)
    except BaseException:
        output.close()
        raise
    output.seek(0)
    response = send_file(
        output,
        mimetype=export.XLSX_MIMETYPE,
        as_attachment=True,
        download_name=f"sms-inbox-events-{period.first_day}-{period.last_day}.xlsx",
        max_age=0,
    )
    response.headers["Cache-Control"] = "no-store"
    return response
