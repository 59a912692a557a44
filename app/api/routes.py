"""/api/v1: the blueprints (flask-smorest: each request validated by a schema, the OpenAPI
document made from the same code), the token check every request passes, the document and a
page of it for people, and the admin page where tokens are made and revoked.

Each API blueprint shares `authenticate` (the token, its rate limit, its last use); each view
says the scope it needs with `requires`. Views parse, call app/api/resources.py, and dump.
"""

import functools
import json
from datetime import timedelta

from flask import Blueprint, Flask, Response, current_app, g, redirect, render_template, request, url_for
from flask_login import AnonymousUserMixin, current_user
from flask_smorest import Blueprint as ApiBlueprint
from markupsafe import Markup, escape

from app import clock, config
from app.api import idempotency, problems, rate_limit, resources, spec, tokens
from app.api.schemas import (
    ContactChange,
    ContactSchema,
    ConversationChange,
    ConversationPageSchema,
    ConversationQuery,
    ConversationSchema,
    IdempotencyHeader,
    LabelChange,
    LabelListSchema,
    LabelSchema,
    MeSchema,
    MessagePageSchema,
    MessageQuery,
    MessageSchema,
    NewLabelSchema,
    NewMessageSchema,
    NewUserAnswer,
    NewUserSchema,
    NewWebhookSchema,
    OptInSchema,
    OptOutSchema,
    OutboundMessageSchema,
    UserChange,
    UserListSchema,
    UserSchema,
    WebhookChange,
    WebhookListSchema,
    WebhookSchema,
    WebhookSecretSchema,
)
from app.extensions import csrf
from app.web.access import TOKEN_PATHS, admin_required, public
from app.web.request_args import LARGEST_ID

PREFIX = "/api/v1"
CONVERSATION = f"/conversations/<int(max={LARGEST_ID}):conversation_id>"

me_bp = ApiBlueprint("api_me", __name__, url_prefix=PREFIX, description="The token making the request.")
conversations_bp = ApiBlueprint(
    "api_conversations", __name__, url_prefix=PREFIX, description="The inbox's list; a conversation's status and owner."
)
messages_bp = ApiBlueprint(
    "api_messages", __name__, url_prefix=PREFIX, description="A conversation's messages, and replies to send."
)
contacts_bp = ApiBlueprint(
    "api_contacts",
    __name__,
    url_prefix=PREFIX,
    description="The person behind a conversation: name, note, numbers, opt-out.",
)
users_bp = ApiBlueprint("api_users", __name__, url_prefix=PREFIX, description="The team's accounts and roles.")
labels_bp = ApiBlueprint(
    "api_labels", __name__, url_prefix=PREFIX, description="The team's labels, and those on a conversation."
)
# Every API blueprint: the token check runs before each of their views. Blueprints added later
webhooks_bp = ApiBlueprint(
    "api_webhooks",
    __name__,
    url_prefix=PREFIX,
    description="Where the app posts its events, signed as Standard Webhooks specify (docs/webhooks.md).",
)
API_BLUEPRINTS = [me_bp, conversations_bp, messages_bp, contacts_bp, users_bp, labels_bp, webhooks_bp]

# The document, the page of it for people, and the problem types' addresses: no token needed.
docs_bp = Blueprint("api_docs", __name__, url_prefix=PREFIX)
# The admin page where tokens are made and revoked (a logged-in admin; CSRF as every form).
tokens_bp = Blueprint("api_tokens", __name__, url_prefix="/admin/api-tokens")


def init_app(app: Flask) -> None:
    api = spec.make_api(app)
    for blueprint in API_BLUEPRINTS:
        api.register_blueprint(blueprint)
        csrf.exempt(blueprint)  # a bearer token, never a cookie: nothing for a forged form to ride on
    app.register_blueprint(docs_bp)
    app.register_blueprint(tokens_bp)
    # First of all hooks: an API request never loads the session's user (nor its cookie).
    app.before_request_funcs.setdefault(None, []).insert(0, no_session_user)


def no_session_user() -> None:
    if request.path.startswith(TOKEN_PATHS):
        g._login_user = AnonymousUserMixin()


def authenticate() -> None:
    """Every API request: a valid token (401), within its rate limit (429); its use noted."""
    now = clock.now()
    row = tokens.verify(tokens.bearer_secret(request.headers.get("Authorization")), now)
    if row is None:
        raise problems.unauthorized()
    g._login_user = tokens.principal_of(row)  # who the request is: audit events name the token
    wait = rate_limit.retry_after(row.id, current_app.config["API_RATE_LIMIT"])
    if wait:
        raise problems.rate_limited(wait)
    tokens.touch(row, now)


for _blueprint in API_BLUEPRINTS:
    _blueprint.before_request(authenticate)


def principal() -> tokens.Principal:
    return current_user._get_current_object()


def requires(blueprint: ApiBlueprint, scope: str):
    """The scope a view needs (403 without it), checked before its arguments, and documented."""

    def decorator(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            if scope not in principal().scopes:
                raise problems.missing_scope(scope)
            return view(*args, **kwargs)

        return blueprint.doc(security=[{spec.SECURITY_SCHEME: [scope]}])(checked)

    return decorator


# --- the token itself --------------------------------------------------------------------


@me_bp.route("/me", methods=["GET"])
@me_bp.response(200, MeSchema)
def me():
    """The token this request is made with: its name, scopes, expiry and last use.

    Any scope will do."""
    row = tokens.token(principal().token_id)
    assert row is not None  # authenticate found it
    return {"token": tokens.as_dict(row)}


# --- conversations -----------------------------------------------------------------------


@conversations_bp.route("/conversations", methods=["GET"])
@requires(conversations_bp, "read")
@conversations_bp.arguments(ConversationQuery, location="query", as_kwargs=False)
@conversations_bp.response(200, ConversationPageSchema)
def list_conversations(args: dict):
    """Conversations, newest activity first, as the inbox lists them.

    A view (`status`), the owner, channel, our-number and label filters, and a search. Pages by cursor:
    `before` a page's `older`, `after` a page's `newer`."""
    page = resources.conversation_page(args)
    return {"conversations": page.rows, "older": page.older, "newer": page.newer}


@conversations_bp.route(CONVERSATION, methods=["GET"])
@requires(conversations_bp, "read")
@conversations_bp.response(200, ConversationSchema)
def get_conversation(conversation_id: int):
    """One conversation."""
    return resources.conversation(conversation_id)


@conversations_bp.route(CONVERSATION, methods=["PATCH"])
@requires(conversations_bp, "send")
@conversations_bp.arguments(ConversationChange)
@conversations_bp.response(200, ConversationSchema)
def change_conversation(changes: dict, conversation_id: int):
    """Change a conversation's status (open, done), owner (`assignee_id`; null: unassigned) and
    snooze (`snoozed_until` a time, null to wake it; or `snoozed_until_reply`).

    Audited as the token."""
    return resources.change_conversation(conversation_id, principal(), changes)


# --- messages ----------------------------------------------------------------------------


@messages_bp.route(CONVERSATION + "/messages", methods=["GET"])
@requires(messages_bp, "read")
@messages_bp.arguments(MessageQuery, location="query")
@messages_bp.response(200, MessagePageSchema)
def list_messages(args: dict, conversation_id: int):
    """A page of a conversation's messages, oldest first.

    Without a cursor, the newest; `before` pages towards older ones, `after` towards newer ones
    (a page that reaches the newest message has `newer` null)."""
    page = resources.message_page(conversation_id, args.get("before"), args.get("after"), args["limit"])
    return {"messages": page.messages, "older": page.older, "newer": page.newer}


@messages_bp.route(CONVERSATION + "/messages", methods=["POST"])
@requires(messages_bp, "send")
@messages_bp.arguments(IdempotencyHeader, location="headers")
@messages_bp.arguments(NewMessageSchema)
@messages_bp.response(
    201,
    MessageSchema,
    description="The reply, stored and queued (or scheduled) to send (its `status` moves on as it is "
    "sent); or the note.",
    headers={
        "Idempotency-Replayed": {"description": "`true`: the first answer to this key", "schema": {"type": "string"}}
    },
)
@messages_bp.alt_response(409, response="CONFLICT", description="Held by the send guard, or refused: nothing was sent.")
def post_message(headers: dict, payload: dict, conversation_id: int):
    """Send a reply (`kind` "reply") to the conversation's customer, as the token, now or at
    `send_at` (`status` scheduled); or write a private note (`kind` "note"), never sent.

    The same `Idempotency-Key` again (within 24 hours) answers what the first request did and
    sends nothing more; with another body it is a 422. A reply the state refuses (the customer
    opted out, the channel can't be answered) is a 409 `refused`. With `seen_message_id`, a message from
    someone else newer than it holds the reply: a 409 listing them, nothing sent."""
    key = headers.get("idempotency_key")
    hashed = idempotency.request_hash(request.method, request.path, request.get_data())
    status, body, replayed = resources.send_reply(
        conversation_id, principal(), payload, key, hashed, MessageSchema().dump
    )
    answer = Response(json.dumps(body, ensure_ascii=False), status, mimetype="application/json")
    if replayed:
        answer.headers["Idempotency-Replayed"] = "true"
    return answer


@messages_bp.route("/messages", methods=["POST"])
@requires(messages_bp, "send")
@messages_bp.arguments(IdempotencyHeader, location="headers")
@messages_bp.arguments(OutboundMessageSchema)
@messages_bp.response(
    201,
    MessageSchema,
    description="The message, stored and queued (or scheduled); `conversation_id` is its conversation's.",
    headers={
        "Idempotency-Replayed": {"description": "`true`: the first answer to this key", "schema": {"type": "string"}}
    },
)
@messages_bp.alt_response(409, response="CONFLICT", description="Refused: the number opted out, or was suppressed.")
def post_new_message(headers: dict, payload: dict):
    """Write first: a message to any number on SMS or Viber, now or at `send_at`, as the token;
    it lands in the number's conversation, or starts one.

    What is not shaped as a number is a 422; a number the number rules refuse (too short, no
    region for a national one), an opted-out or suppressed number, or a channel with no sender
    set up, a 409 `refused`. `Idempotency-Key` as for replies."""
    key = headers.get("idempotency_key")
    hashed = idempotency.request_hash(request.method, request.path, request.get_data())
    status, body, replayed = resources.send_new(principal(), payload, key, hashed, MessageSchema().dump)
    answer = Response(json.dumps(body, ensure_ascii=False), status, mimetype="application/json")
    if replayed:
        answer.headers["Idempotency-Replayed"] = "true"
    return answer


@messages_bp.route(f"/messages/<int(max={LARGEST_ID}):message_id>", methods=["DELETE"])
@requires(messages_bp, "send")
@messages_bp.response(204)
@messages_bp.alt_response(409, response="CONFLICT", description="Not waiting: on its way, sent, or not scheduled.")
def cancel_message(message_id: int):
    """Cancel a scheduled message (scheduled, held or missed): it is never sent. Audited as the token.

    Once it is on its way or sent, a 409 `refused`."""
    resources.cancel_scheduled(message_id)
    return ""


# --- contacts ----------------------------------------------------------------------------

CONTACT = f"/contacts/<int(max={LARGEST_ID}):conversation_id>"


@contacts_bp.route(CONTACT, methods=["GET"])
@requires(contacts_bp, "read")
@contacts_bp.response(200, ContactSchema)
def get_contact(conversation_id: int):
    """The person behind a conversation (a contact's id is its conversation's): name, note,
    numbers and opt-out state."""
    return resources.contact(conversation_id)


@contacts_bp.route(CONTACT, methods=["PATCH"])
@requires(contacts_bp, "send")
@contacts_bp.arguments(ContactChange)
@contacts_bp.response(200, ContactSchema)
def change_contact(changes: dict, conversation_id: int):
    """Change the name or the note (null or empty: none). Audited as the token."""
    return resources.change_contact(conversation_id, changes)


@contacts_bp.route(CONTACT + "/opt-out", methods=["POST"])
@requires(contacts_bp, "send")
@contacts_bp.arguments(OptOutSchema)
@contacts_bp.response(200, ContactSchema)
def opt_out(_payload: dict, conversation_id: int):
    """Opt the customer out: nothing more is sent to them. Audited as the token."""
    return resources.set_opted_out(conversation_id, principal(), True)


@contacts_bp.route(CONTACT + "/opt-in", methods=["POST"])
@requires(contacts_bp, "send")
@contacts_bp.arguments(OptInSchema)
@contacts_bp.response(200, ContactSchema)
def opt_in(payload: dict, conversation_id: int):
    """Opt the customer back in. Lifting their own STOP (`opt_in_needs_admin`) takes the
    `admin` scope and a `reason`, kept in the audit trail."""
    return resources.set_opted_out(conversation_id, principal(), False, payload.get("reason", ""))


# --- users -------------------------------------------------------------------------------

USER = "/users/<int:user_id>"


@users_bp.route("/users", methods=["GET"])
@requires(users_bp, "read")
@users_bp.response(200, UserListSchema)
def list_users():
    """Every account, by name."""
    return {"users": resources.all_users()}


@users_bp.route(USER, methods=["GET"])
@requires(users_bp, "read")
@users_bp.response(200, UserSchema)
def get_user(user_id: int):
    """One account."""
    return resources.user(user_id)


@users_bp.route("/users", methods=["POST"])
@requires(users_bp, "admin")
@users_bp.arguments(NewUserSchema)
@users_bp.response(201, NewUserAnswer)
def create_user(payload: dict):
    """Add an account (admin or agent); its person sets a password with the one-time link."""
    account, token, expires = resources.create_user(payload["username"], payload["role"])
    link = config.site_url(current_app.config) + url_for("auth.set_password", token=token)
    return {"user": account, "password_link": link, "link_expires_at": expires}


@users_bp.route(USER, methods=["PATCH"])
@requires(users_bp, "admin")
@users_bp.arguments(UserChange)
@users_bp.response(200, UserSchema)
def change_user(changes: dict, user_id: int):
    """Change an account's role, or disable it (its sessions end) or enable it again."""
    return resources.change_user(user_id, changes)


# --- labels ------------------------------------------------------------------------------

LABEL = "/labels/<int:label_id>"  # an INTEGER id


@labels_bp.route("/labels", methods=["GET"])
@requires(labels_bp, "read")
@labels_bp.response(200, LabelListSchema)
def list_labels():
    """Every label, by name."""
    return {"labels": resources.all_labels()}


@labels_bp.route("/labels", methods=["POST"])
@requires(labels_bp, "admin")
@labels_bp.arguments(NewLabelSchema)
@labels_bp.response(201, LabelSchema)
@labels_bp.alt_response(409, response="CONFLICT", description="The name is taken (case aside) or holds a comma.")
def create_label(payload: dict):
    """Add a label. Audited as the token."""
    return resources.create_label(payload["name"], payload["colour"])


@labels_bp.route(LABEL, methods=["PATCH"])
@requires(labels_bp, "admin")
@labels_bp.arguments(LabelChange)
@labels_bp.response(200, LabelSchema)
@labels_bp.alt_response(409, response="CONFLICT", description="The name is taken (case aside) or holds a comma.")
def change_label(changes: dict, label_id: int):
    """Rename or recolour a label; it stays on its conversations. Audited as the token."""
    return resources.change_label(label_id, changes)


@labels_bp.route(LABEL, methods=["DELETE"])
@requires(labels_bp, "admin")
@labels_bp.response(204)
def delete_label(label_id: int):
    """Delete a label: it comes off every conversation. Audited as the token."""
    resources.delete_label(label_id)
    return ""


@labels_bp.route(CONVERSATION + "/labels/<int:label_id>", methods=["PUT"])
@requires(labels_bp, "send")
@labels_bp.response(204)
def add_label(conversation_id: int, label_id: int):
    """Put a label on a conversation (on it already: nothing changes). Audited as the token."""
    resources.label_conversation(conversation_id, label_id, True)
    return ""


@labels_bp.route(CONVERSATION + "/labels/<int:label_id>", methods=["DELETE"])
@requires(labels_bp, "send")
@labels_bp.response(204)
def remove_label(conversation_id: int, label_id: int):
    """Take a label off a conversation (not on it: nothing changes). Audited as the token."""
    resources.label_conversation(conversation_id, label_id, False)
    return ""


# --- webhooks ----------------------------------------------------------------------------

WEBHOOK = "/webhooks/<int:endpoint_id>"  # an INTEGER id


@webhooks_bp.route("/webhooks", methods=["GET"])
@requires(webhooks_bp, "admin")
@webhooks_bp.response(200, WebhookListSchema)
def list_webhooks():
    """Every webhook endpoint (their secrets are never shown again)."""
    return {"webhooks": resources.all_webhooks()}


@webhooks_bp.route("/webhooks", methods=["POST"])
@requires(webhooks_bp, "admin")
@webhooks_bp.arguments(NewWebhookSchema)
@webhooks_bp.response(201, WebhookSecretSchema)
def create_webhook(payload: dict):
    """Subscribe a URL to event types; the answer holds its signing secret, this once. The URL must
    be https and resolve to public addresses only (WEBHOOKS_ALLOWED_NETWORKS admits others, http
    too): any other is a 422 naming `url`."""
    return resources.create_webhook(payload["url"], payload["events"])


@webhooks_bp.route(WEBHOOK, methods=["GET"])
@requires(webhooks_bp, "admin")
@webhooks_bp.response(200, WebhookSchema)
def get_webhook(endpoint_id: int):
    """One webhook endpoint."""
    return resources.webhook(endpoint_id)


@webhooks_bp.route(WEBHOOK, methods=["PATCH"])
@requires(webhooks_bp, "admin")
@webhooks_bp.arguments(WebhookChange)
@webhooks_bp.response(200, WebhookSchema)
def change_webhook(changes: dict, endpoint_id: int):
    """Change its URL or event types, or turn it off and on (on again, it starts from the newest event)."""
    return resources.change_webhook(endpoint_id, changes)


@webhooks_bp.route(WEBHOOK + "/rotate", methods=["POST"])
@requires(webhooks_bp, "admin")
@webhooks_bp.response(200, WebhookSecretSchema)
def rotate_webhook(endpoint_id: int):
    """A new signing secret, shown this once; the one before still signs deliveries for a day."""
    return resources.rotate_webhook_secret(endpoint_id)


@webhooks_bp.route(WEBHOOK, methods=["DELETE"])
@requires(webhooks_bp, "admin")
@webhooks_bp.response(204)
def delete_webhook(endpoint_id: int):
    """Remove an endpoint and what it had still to deliver."""
    resources.delete_webhook(endpoint_id)
    return ""


# --- the document, and a page of it for people --------------------------------------------


@docs_bp.get("/openapi.json")
@public
def openapi_json():
    return spec.document()


@docs_bp.get("/docs")
@public
def docs_page():
    document = spec.document()
    return render_template(
        "api/docs.html",
        document=document,
        tags=spec.tags(document),
        operations=spec.operations(document),
        kinds=problems.KINDS,
    )


@docs_bp.app_template_filter()
def inline_code(text: str) -> Markup:
    """Text whose `backticked` parts are code, escaped (the document's descriptions)."""
    parts = str(text).split("`")
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if n % 2 else escape(part) for n, part in enumerate(parts)
    )


@docs_bp.get("/problems/<kind>")
@public
def problem_type(kind: str):
    """A problem's `type` leads to its description on the docs page."""
    if kind not in problems.KINDS:
        raise problems.not_found("kind of problem")
    return redirect(url_for("api_docs.docs_page", _anchor=f"problem-{kind}"))


# --- the admin page: tokens made, shown once, revoked ---------------------------------------


@tokens_bp.context_processor
def runner_banner() -> dict:
    """As on every admin page: a banner when no job runner has been heard from within a minute."""
    from app.jobs import runner

    return {"no_runner_alive": lambda: not runner.runners_alive(clock.now())}


@tokens_bp.get("/")
@admin_required
def token_list(error: str | None = None, created: tuple | None = None, status: int = 200, typed: dict | None = None):
    return render_template(
        "api/tokens.html",
        tokens=tokens.all_tokens(),
        now=clock.now(),
        state=tokens.state,
        scopes_of=tokens.scopes_of,
        all_scopes=tokens.SCOPES,
        error=error,
        created=created,
        typed=typed or {"scopes": ["read"]},
    ), status


@tokens_bp.post("/")
@admin_required
def create_token():
    form = request.form
    name, scopes, days = form.get("name", ""), form.getlist("scope"), form.get("days", "").strip()
    typed = {"name": name, "scopes": scopes, "days": days}
    if days and not (days.isdigit() and 1 <= int(days) <= 3650):
        return token_list(error="The expiry is a number of days, 1 to 3650 (empty: never).", status=400, typed=typed)
    expires = clock.now() + timedelta(days=int(days)) if days else None
    try:
        row, secret = tokens.create_token(name, scopes, expires, created_by=current_user.username)
    except tokens.TokenRefused as refused:
        return token_list(error=str(refused), status=400, typed=typed)
    return token_list(created=(row, secret))


@tokens_bp.post("/<int:token_id>/revoke")
@admin_required
def revoke_token(token_id: int):
    tokens.revoke(token_id)
    return redirect(url_for("api_tokens.token_list"), 303)
