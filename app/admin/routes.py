"""Admin pages: users and roles, locked logins, the audit trail, retention, the team's time zone
and currency, erasure, background jobs.

Every view here is `admin_required` (tests walk the URL map as an agent to check it).
"""

import csv
import io
from decimal import Decimal

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app import audit, clock, config, hours, jobs, team
from app.accounts import sessions, throttle, two_factor
from app.accounts import users as user_accounts  # `users` is the view below
from app.admin import jobs as admin_jobs
from app.contacts import autoassign, labels, owners
from app.db.models import ROLES, USERNAME_LENGTH, User
from app.export import safe_cell
from app.inbox import list_views
from app.jobs import servers
from app.privacy import erasure, settings
from app.team import currency
from app.web.access import admin_required
from app.web.request_args import LARGEST_ID, date_arg, id_arg
from app.webhooks import endpoints as webhook_endpoints

bp = Blueprint("admin", __name__, url_prefix="/admin")
AUDIT_PAGE_SIZE = 100


class AddUserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_LENGTH)])


class RetentionForm(FlaskForm):
    days = IntegerField("Keep messages for (days)", validators=[Optional(), NumberRange(min=1, max=100_000)])
    audit_days = IntegerField(
        "Keep the audit trail for (days)", validators=[Optional(), NumberRange(min=1, max=100_000)]
    )


class TimeZoneForm(FlaskForm):
    zone = SelectField("The team's time zone")


class CurrencyForm(FlaskForm):
    code = StringField("Currency", validators=[DataRequired(), Length(min=3, max=3)])


@bp.context_processor
def runner_banner() -> dict:
    """Every admin page says so when no job runner has been heard from within a minute."""
    from app.jobs import runner

    return {
        "no_runner_alive": lambda: not runner.runners_alive(clock.now()),
        "failing_webhooks": webhook_endpoints.turned_off_for_failing,  # app/webhooks: turned off for failing
    }


def user_or_404(user_id: int) -> User:
    return user_accounts.user_by_id(user_id) or abort(404)


@bp.get("/")
@admin_required
def index():
    return redirect(url_for("admin.users"))


@bp.get("/users")
@admin_required
def users(form: AddUserForm | None = None, error: str | None = None, status: int = 200):
    return render_template(
        "admin/users.html",
        form=form or AddUserForm(formdata=None),
        error=error,
        users=user_accounts.everyone(),
        locked=throttle.locked_logins(clock.now()),
        two_factor_required=two_factor.required(),
        reply_takes_ownership=owners.reply_takes_ownership(),
        auto=autoassign.settings(),
        our_numbers=list_views.recipients(),
    ), status


@bp.post("/reply-ownership")
@admin_required
def reply_ownership():
    owners.set_reply_takes_ownership(request.form.get("on") == "1")
    return redirect(url_for("admin.users"), 303)


@bp.post("/auto-assignment")
@admin_required
def auto_assignment():
    on, cap = request.form.get("on") == "1", request.form.get("cap", "")
    if not cap.isdigit():
        return users(error="The cap is a number of conversations.", status=400)
    numbers = request.form.getlist("number")
    try:
        autoassign.set_settings(on, int(cap), numbers)
    except autoassign.SettingsRefused as refused:
        return users(error=str(refused), status=400)
    return redirect(url_for("admin.users"), 303)


@bp.post("/two-factor-requirement")
@admin_required
def two_factor_requirement():
    required = request.form.get("required") == "1"
    two_factor.set_required(required)
    return redirect(url_for("admin.users"), 303)


@bp.post("/users")
@admin_required
def add_user():
    form, role = AddUserForm(), request.form.get("role")
    if not form.validate_on_submit() or role not in ROLES:
        return users(form, "Give a username of 1 to 80 characters and a role.", 400)
    try:
        user, token = user_accounts.invite(form.username.data, role)
    except ValueError as exc:
        return users(form, str(exc), 400)
    return link_page(user, token, new=True)


def link_page(user: User, token: str, new: bool = False):
    # From PUBLIC_URL (or BIND), never from the request's Host header, which the client chooses.
    link = config.site_url(current_app.config) + url_for("auth.set_password", token=token)
    return render_template(
        "admin/link.html", user=user, link=link, new=new, hours=current_app.config["RESET_LINK_SECONDS"] / 3600
    )


@bp.get("/users/<int:user_id>")
@admin_required
def user(user_id: int, error: str | None = None, status: int = 200):
    account = user_or_404(user_id)
    return render_template(
        "admin/user.html",
        account=account,
        error=error,
        roles=ROLES,
        two_factor_required=two_factor.required(),
        sessions=sessions.sessions_of(account),
        now=clock.now(),
    ), status


@bp.post("/users/<int:user_id>/role")
@admin_required
def change_role(user_id: int):
    account = user_or_404(user_id)
    role = request.form.get("role", "")
    try:
        user_accounts.change_role(account, role)
    except ValueError as exc:
        return user(user_id, str(exc), 400)
    return redirect(url_for("admin.user", user_id=user_id), 303)


@bp.post("/users/<int:user_id>/reset-password")
@admin_required
def reset_password(user_id: int):
    account = user_or_404(user_id)
    token = user_accounts.send_reset_link(account)
    return link_page(account, token)


@bp.post("/users/<int:user_id>/reset-two-factor")
@admin_required
def reset_two_factor(user_id: int):
    """For a person who lost their phone and backup codes: their password alone logs them in
    again (or, where two-factor is required, leads them to set it up anew)."""
    account = user_or_404(user_id)
    two_factor.reset(account)
    return redirect(url_for("admin.user", user_id=user_id), 303)


@bp.post("/users/<int:user_id>/disable")
@admin_required
def disable(user_id: int):
    account = user_or_404(user_id)
    try:
        user_accounts.disable(account)
    except ValueError as exc:
        return user(user_id, str(exc), 400)
    return redirect(url_for("admin.user", user_id=user_id), 303)


@bp.post("/users/<int:user_id>/enable")
@admin_required
def enable(user_id: int):
    account = user_or_404(user_id)
    user_accounts.enable(account)
    return redirect(url_for("admin.user", user_id=user_id), 303)


@bp.post("/locked-logins/<int:throttle_id>/unlock")
@admin_required
def unlock(throttle_id: int):
    throttle.unlock(throttle_id)
    return redirect(url_for("admin.users"), 303)


# --- the audit trail ---------------------------------------------------------------------


def audit_filters() -> dict:
    action = request.args.get("action", "")
    return {
        "action": action if action in audit.ACTIONS else None,
        "username": request.args.get("user", "").strip() or None,
        "first_day": date_arg("from"),
        "last_day": date_arg("to"),
    }


@bp.get("/audit")
@admin_required
def audit_trail():
    filters = audit_filters()
    before = id_arg("before", required=True)
    events, more = audit.events_page(AUDIT_PAGE_SIZE, **filters, before_id=before)
    filter_args = {name: value for name, value in request.args.items() if name != "before" and value}
    return render_template(
        "admin/audit.html",
        events=events,
        more=more,
        paged=before is not None,
        filter_args=filter_args,
        filters=filters,
        actions=audit.ACTIONS,
        usernames=audit.usernames(),
        describe=audit.describe_details,
    )


@bp.get("/audit.csv")
@admin_required
def audit_csv():
    filters = audit_filters()

    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
        buffer.write("\ufeff")
        writer.writerow(["time", "user", "address", "action", "details"])
        for event in audit.every_event(**filters):
            writer.writerow(
                [
                    clock.utc_iso(event.at),
                    safe_cell(event.username),
                    safe_cell(event.address),
                    event.action,
                    safe_cell(event.details),
                ]
            )
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue().encode()

    filename = f"sms-inbox-audit-{clock.now():%Y-%m-%d}.csv"
    return Response(
        stream_with_context(lines()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- retention and erasure ---------------------------------------------------------------


@bp.route("/retention", methods=["GET", "POST"])
@admin_required
def retention_settings():
    form, message, status = RetentionForm(), None, 200
    if form.validate_on_submit():
        settings.set_days(form.days.data, form.audit_days.data)
        message = "Saved. The next daily purge follows the new setting."
    elif request.method == "POST":
        status = 400
    else:
        form.days.data, form.audit_days.data = settings.days(), settings.audit_days()
    return render_template("admin/retention.html", form=form, message=message, last_purge=settings.last_purge()), status


# --- the team's time zone ----------------------------------------------------------------


@bp.route("/time-zone", methods=["GET", "POST"])
@admin_required
def time_zone():
    """Where snooze's "tomorrow 09:00" is: team.set_time_zone saves (and audits) the choice."""
    form, message, status = TimeZoneForm(), None, 200
    form.zone.choices = team.time_zone_names()
    if form.validate_on_submit():
        team.set_time_zone(form.zone.data)
        message = f"Saved. Snooze's times are in {form.zone.data} now."
    elif request.method == "POST":
        status = 400
    else:
        form.zone.data = team.time_zone_name()
    return team_settings_page(form, CurrencyForm(formdata=None, code=currency.currency()), message, status)


@bp.post("/currency")
@admin_required
def currency_setting():
    """The account's currency, which prices from delivery reports are shown in (on the time zone page)."""
    form, message, error = CurrencyForm(), None, None
    if form.validate_on_submit():
        try:
            code = currency.set_currency(form.code.data)
        except ValueError as refused:
            error = str(refused)
        else:
            message = f"Saved. Prices are shown in {code} now."
    else:
        error = "Type a currency's three-letter code (ISO 4217), for example EUR."
    zone_form = TimeZoneForm(formdata=None, zone=team.time_zone_name())
    zone_form.zone.choices = team.time_zone_names()
    return team_settings_page(zone_form, form, message, 400 if error else 200, currency_error=error)


def team_settings_page(form, currency_form, message: str | None, status: int, currency_error: str | None = None):
    return (
        render_template(
            "admin/time_zone.html",
            form=form,
            currency_form=currency_form,
            message=message,
            currency_error=currency_error,
            server_zone=team.server_time_zone(),
            configured=current_app.config.get("TEAM_TIME_ZONE") or None,
            configured_currency=current_app.config.get("CURRENCY") or currency.DEFAULT,
            example=currency.money(Decimal("0.2"), currency.currency()),
            now=clock.now(),
            zone=team.time_zone_name(),
        ),
        status,
    )


@bp.route(f"/conversations/<int(max={LARGEST_ID}):conversation_id>/delete", methods=["GET", "POST"])
@admin_required
def delete_conversation(conversation_id: int):
    summary = erasure.conversation_summary(conversation_id) or abort(404)
    if request.method == "POST":
        erasure.erase_conversation(conversation_id)
        return render_template("admin/deleted.html", summary=summary)
    return render_template("admin/delete_conversation.html", summary=summary)


# --- business hours and the away reply ------------------------------------------------------


@bp.get("/hours")
@admin_required
def business_hours(error: str | None = None, typed: dict | None = None, status: int = 200):
    number = request.values.get("number", hours.ALL)
    numbers = hours.our_numbers()
    if number != hours.ALL and number not in numbers:
        abort(404)
    shown = hours.hours_for(number)
    if typed is None:
        typed = {
            "opens": [day[0][0].strftime("%H:%M") if day else "" for day in shown.weekly],
            "closes": [day[0][1].strftime("%H:%M") if day else "" for day in shown.weekly],
            "closed": hours.closed_text(shown),
            "away_text": hours.away_settings().text if number == hours.ALL else (shown.own and shown.away_text) or "",
        }
    return render_template(
        "admin/hours.html",
        number=number,
        numbers=numbers,
        own=number == hours.ALL or shown.own,
        away=hours.away_settings(),
        days=hours.DAYS,
        typed=typed,
        zone=team.time_zone_name(),
        open_now=hours.is_open(clock.now(), number or None),
        saved=request.args.get("saved") == "1",
        error=error,
    ), status


@bp.post("/hours")
@admin_required
def save_business_hours():
    number = request.form.get("number", hours.ALL)
    opens, closes = request.form.getlist("opens"), request.form.getlist("closes")
    closed, away_text = request.form.get("closed", ""), request.form.get("away_text", "")
    typed = {"opens": opens, "closes": closes, "closed": closed, "away_text": away_text}
    try:
        hours.save_hours(number, hours.parse_weekly(opens, closes), hours.parse_closed(closed), away_text)
    except hours.HoursRefused as refused:
        return business_hours(error=str(refused), typed=typed, status=400)
    return redirect(url_for("admin.business_hours", number=number or None, saved=1), 303)


@bp.post("/hours/shared")
@admin_required
def use_shared_hours():
    number = request.form.get("number", "")
    hours.use_shared_hours(number)
    return redirect(url_for("admin.business_hours", number=number or None, saved=1), 303)


@bp.post("/hours/away")
@admin_required
def away_reply():
    window = request.form.get("window_hours", "")
    if not window.isdigit():
        return business_hours(error="The window is a whole number of hours.", status=400)
    try:
        hours.set_away(request.form.get("on") == "1", int(window))
    except hours.HoursRefused as refused:
        return business_hours(error=str(refused), status=400)
    return redirect(url_for("admin.business_hours", saved=1), 303)


# --- labels ------------------------------------------------------------------------------


@bp.get("/labels")
@admin_required
def labels_page(error: str | None = None, typed: dict | None = None, status: int = 200):
    return render_template(
        "admin/labels.html",
        labels=labels.all_labels(),
        usage=labels.usage(),
        colours=labels.COLOURS,
        error=error,
        typed=typed or {},
    ), status


@bp.post("/labels")
@admin_required
def create_label():
    name, colour = request.form.get("name", ""), request.form.get("colour", labels.DEFAULT_COLOUR)
    try:
        labels.create(name, colour)
    except labels.LabelRefused as refused:
        return labels_page(str(refused), {"name": name, "colour": colour, "label": None}, 400)
    return redirect(url_for("admin.labels_page"), 303)


@bp.post("/labels/<int:label_id>")
@admin_required
def update_label(label_id: int):
    labels.label(label_id) or abort(404)
    name, colour = request.form.get("name", ""), request.form.get("colour", "")
    try:
        labels.update(label_id, name, colour)
    except labels.LabelRefused as refused:
        return labels_page(str(refused), {"name": name, "colour": colour, "label": label_id}, 400)
    return redirect(url_for("admin.labels_page"), 303)


@bp.post("/labels/<int:label_id>/delete")
@admin_required
def delete_label(label_id: int):
    labels.label(label_id) or abort(404)
    labels.delete(label_id)
    return redirect(url_for("admin.labels_page"), 303)


# --- background jobs ---------------------------------------------------------------------


@bp.get("/jobs")
@admin_required
def job_list():
    from app.jobs import runner

    now = clock.now()
    found = jobs.listing()
    return render_template(
        "admin/jobs.html",
        now=now,
        alive_within=runner.ALIVE_WITHIN,
        runners=servers.runner_rows(),
        jobs_by_state={state: [job for job in found if job.state == state] for state in ("running", "due", "dead")},
    )


@bp.post(f"/jobs/<int(max={2**63 - 1}):job_id>/retry")
@admin_required
def retry_job(job_id: int):
    admin_jobs.retry(job_id)
    return redirect(url_for("admin.job_list"), 303)
