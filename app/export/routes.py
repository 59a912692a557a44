"""The export dialog and its downloads: CSV streamed, XLSX built on disk and then sent."""

import tempfile
from typing import cast

from flask import Blueprint, Flask, Response, current_app, render_template, request, send_file, stream_with_context
from flask_login import current_user
from werkzeug.local import LocalProxy

from app import audit, clock, contacts, export
from app.inbox import queries
from app.inbox.list_views import VIEWS, ListFilter
from app.jobs import leases
from app.privacy import erasure
from app.web.request_args import date_arg, id_arg

bp = Blueprint("export", __name__)


def export_filters() -> dict:
    """What an export holds, from its query string: the search, a conversation, UTC days from/to,
    a view with its channel and our `number` (the list calls that one `to`, the export's last day);
    with `match=text` the search picks messages by their text rather than conversations."""
    view, channel, number = (request.args.get(name, "").strip() for name in ("view", "channel", "number"))
    from_list = ListFilter.from_args(request.args)
    assignee = from_list.assignee  # "me", "none", a person's id, or None
    labels = from_list.labels  # `label=...`, each: the conversations have them all
    list_filter = None
    if view or channel or number or assignee or labels:
        list_filter = ListFilter(
            view if view in VIEWS else "all",
            channel or None,
            number or None,
            assignee,
            me=current_user.id,
            labels=labels,
        )
    q = request.args.get("q", "").strip()
    in_texts = request.args.get("match") == "text"  # the search in message texts, not numbers and names
    return dict(
        q="" if in_texts else q,
        text=q if in_texts else "",
        conversation_id=id_arg("conversation"),
        first_day=date_arg("from"),
        last_day=date_arg("to"),
        list_filter=list_filter,
    )


@bp.get("/export")
def dialog():
    """The export's choices as a plain GET form, with how many messages they hold."""
    filters = export_filters()
    messages = export.count_messages(export.export_query(**filters))
    return render_template(
        "export/dialog.html",
        messages=messages,
        filters=filters,
        views=VIEWS,
        seconds=export.xlsx_seconds(messages),
        unread=queries.unread_conversations(),
        conversation=contacts.conversation(filters["conversation_id"])
        if filters["conversation_id"] is not None
        else None,
    )


@bp.get("/export/download")
def download():
    """The dialog's Download button: the chosen format, with the same choices."""
    return xlsx() if request.args.get("format") == "xlsx" else csv()


def audited_export_query(file_format: str):
    """The export's query, its filters and row count recorded in the audit trail first."""
    filters = export_filters()
    query = export.export_query(**filters)
    list_filter = filters.pop("list_filter")
    searched = filters["q"] or filters["text"]
    audit.record(
        "export",
        {
            **filters,
            "format": file_format,
            "rows": export.count_messages(query),
            **(vars(list_filter) if list_filter else {}),
            # whom a search named, if few: an erasure finds it by them (app/privacy/erasure.py)
            **({erasure.MATCHED: erasure.search_subjects(filters["q"], filters["text"])} if searched else {}),
        },
    )
    return query


# An export holds its person's lease while it runs (one at a time per person, across processes):
# renewed as rows go out, so a process that died frees it within this many seconds.
EXPORT_LEASE_SECONDS = 120


def export_lease_or_busy_page() -> leases.Lease | Response:
    """The person's export lease, or the 429 page that says an export of theirs is running."""
    lease = leases.take(f"export:{current_user.id}", EXPORT_LEASE_SECONDS)
    if lease is not None:
        return lease
    choices = {name: value for name, value in request.args.items() if value}
    response = current_app.make_response((render_template("export/busy.html", choices=choices), 429))
    response.headers["Retry-After"] = "30"
    return response


@bp.get("/export.csv")
def csv():
    lease = export_lease_or_busy_page()
    if isinstance(lease, Response):  # an export of theirs is running
        return lease
    try:
        query = audited_export_query("csv")
    except BaseException:
        lease.release()
        raise
    filename = f"sms-inbox-{clock.now():%Y-%m-%d}.csv"

    def released_before_the_last_chunk():
        """The chunks, the lease released before the last one goes out: a download that has
        finished can be followed at once by the next, in any process."""
        chunks = export.csv_chunks(query, on_chunk=lease.keep)
        yield next(chunks)  # the header line, before the query runs
        previous = None
        for chunk in chunks:
            if previous is not None:
                yield previous
            previous = chunk
        lease.release()
        if previous is not None:
            yield previous

    response = Response(
        stream_with_context(released_before_the_last_chunk()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
    # And when the download is cancelled (the server closes the response); releasing twice is harmless.
    app = cast("LocalProxy[Flask]", current_app)._get_current_object()

    def release():
        with app.app_context():
            lease.release()

    response.call_on_close(release)
    return response


@bp.get("/export.xlsx")
def xlsx():
    """Built whole on disk first (see export.xlsx_file), then sent with its length."""
    lease = export_lease_or_busy_page()
    if isinstance(lease, Response):  # an export of theirs is running
        return lease
    output = tempfile.TemporaryFile()  # deleted when closed, once sent
    try:
        export.xlsx_file(audited_export_query("xlsx"), output, on_chunk=lease.keep)
    except BaseException:
        output.close()
        raise
    finally:
        lease.release()  # the work is the building: sending the file costs little
    output.seek(0)
    response = send_file(
        output,
        mimetype=export.XLSX_MIMETYPE,
        as_attachment=True,
        download_name=f"sms-inbox-{clock.now():%Y-%m-%d}.xlsx",
        max_age=0,
    )
    response.headers["Cache-Control"] = "no-store"
    return response
