"""What the API takes and gives, as marshmallow schemas: each request is validated by them (an
unknown field is refused), each answer dumped by them, and the OpenAPI document is made from them."""

from datetime import UTC

from marshmallow import RAISE, Schema, fields, validate

from app import clock
from app.db.models import (
    CONTACT_NAME_LENGTH,
    CONTACT_NOTE_LENGTH,
    LABEL_COLOURS,
    LABEL_NAME_LENGTH,
    ROLES,
    USERNAME_LENGTH,
    WEBHOOK_URL_LENGTH,
)
from app.inbox.list_views import PERSONAL_VIEWS, VIEWS
from app.replies import sms_length
from app.web.request_args import LARGEST_ID, LARGEST_INT
from app.webhooks import EVENT_TYPES

PAGE_LIMIT = 100  # most items a page may ask for
OPT_IN_REASON_LENGTH = 500


class Strict(Schema):
    class Meta:
        unknown = RAISE  # a field we don't know is a mistake the client should hear about


class UtcDateTime(fields.DateTime):
    """A stored (naive UTC) time as ISO 8601 with a Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else clock.utc_iso(value)


class JsonInteger(fields.Integer):
    """An integer in a JSON body: a number with no fraction (5, or 5.0 as JSON Schema allows),
    never a text ("5") or a boolean."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        return super()._deserialize(int(value), attr, data, **kwargs)


class AwareTime(fields.AwareDateTime):
    """A time: RFC 3339 with its offset (`2026-03-02T09:00:00+02:00`, or a Z); loaded as naive UTC,
    as times are stored. Whether it is ahead is the state's question (a 409, app/api/resources.py):
    the same request is valid one minute and late the next."""

    def __init__(self, **kwargs) -> None:
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).astimezone(UTC).replace(tzinfo=None)


def message_id(in_body: bool = True, **kwargs) -> fields.Integer:
    """A message id: in a JSON body a number (JsonInteger), in a query string digits."""
    kind = JsonInteger if in_body else fields.Integer
    return kind(validate=validate.Range(min=1, max=LARGEST_ID), **kwargs)


def user_id(**kwargs) -> fields.Integer:
    return JsonInteger(validate=validate.Range(min=1, max=LARGEST_INT), **kwargs)


# --- problems ----------------------------------------------------------------------------


class FieldError(Schema):
    in_ = fields.String(data_key="in", required=True, metadata={"description": "body, query, header or path"})
    field = fields.String(required=True, metadata={"description": "the field, a dotted path; empty: the whole"})
    message = fields.String(required=True)


class NewerMessage(Schema):
    id = fields.Integer(required=True)
    direction = fields.String(required=True, validate=validate.OneOf(["in", "out"]))
    author = fields.String(allow_none=True, required=True)
    received_at = UtcDateTime(required=True)
    preview = fields.String(required=True)


class ProblemSchema(Schema):
    """A problem document (RFC 9457)."""

    type = fields.String(required=True, metadata={"description": "stable per kind: /api/v1/problems/<kind>"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    errors = fields.List(fields.Nested(FieldError), metadata={"description": "validation: each field refused"})
    newer = fields.List(fields.Nested(NewerMessage), metadata={"description": "reply-held: what came meanwhile"})
    more = fields.Integer(metadata={"description": "reply-held: how many more than `newer` came"})


# --- the token itself --------------------------------------------------------------------


class TokenSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    scopes = fields.List(fields.String(validate=validate.OneOf(["read", "send", "admin"])), required=True)
    created_at = UtcDateTime(required=True)
    expires_at = UtcDateTime(allow_none=True, required=True)
    last_used_at = UtcDateTime(allow_none=True, required=True)


class MeSchema(Schema):
    token = fields.Nested(TokenSchema, required=True)


# --- conversations -----------------------------------------------------------------------


class ConversationSchema(Schema):
    id = fields.Integer(required=True)
    sender = fields.String(required=True, metadata={"description": "the customer's number (or name, on some channels)"})
    channel = fields.String(required=True, metadata={"description": "of the newest message"})
    contact_name = fields.String(allow_none=True, required=True)
    status = fields.String(required=True, validate=validate.OneOf(["open", "done"]))
    assignee_id = fields.Integer(
        allow_none=True, required=True, metadata={"description": "the owner; null: unassigned"}
    )
    assignee = fields.String(allow_none=True, required=True, attribute="owner_name")
    unread_count = fields.Integer(required=True)
    message_count = fields.Integer(required=True)
    opted_out = fields.Boolean(required=True)
    last_message_id = fields.Integer(allow_none=True, required=True)
    last_message_at = UtcDateTime(required=True, attribute="last_sent_at")
    last_direction = fields.String(required=True, validate=validate.OneOf(["in", "out"]))
    last_text = fields.String(required=True, metadata={"description": "the newest message's start"})
    snoozed_until = UtcDateTime(
        allow_none=True, required=True, metadata={"description": "snoozed (out of Open) until then; null: not so"}
    )
    snoozed_until_reply = fields.Boolean(required=True, metadata={"description": "snoozed until the customer writes"})
    labels = fields.Function(
        lambda conversation: conversation.label_names.split(", ") if conversation.label_names else [],
        required=True,
        metadata={"description": "its labels' names, by name", "type": "array", "items": {"type": "string"}},
    )


class ConversationPageSchema(Schema):
    conversations = fields.List(fields.Nested(ConversationSchema), required=True)
    older = fields.Integer(
        allow_none=True, required=True, metadata={"description": "`before` for the next older page; null: none"}
    )
    newer = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "`after` for the next newer page; null: this is the newest"},
    )


class ConversationQuery(Schema):
    status = fields.String(
        load_default="open",
        validate=validate.OneOf([view for view in VIEWS if view not in PERSONAL_VIEWS]),
        metadata={"description": "the view, as in the inbox: open, snoozed, done, all, unread, opted-out"},
    )
    assignee = fields.String(
        validate=validate.Regexp(r"^(none|[1-9][0-9]{0,8})$"),
        metadata={"description": "`none` (unassigned) or a person's id"},
    )
    channel = fields.String(validate=validate.Length(min=1, max=32))
    to = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "one of our numbers"})
    label = fields.List(
        fields.String(validate=validate.Length(min=1, max=LABEL_NAME_LENGTH)),
        validate=validate.Length(max=10),
        metadata={"description": "a label's name, case aside; repeated: conversations with all of them"},
    )
    q = fields.String(
        validate=validate.Length(max=200), metadata={"description": "search: part of a number or a contact's name"}
    )
    before = message_id(in_body=False, metadata={"description": "a page's `older` cursor"})
    after = message_id(in_body=False, metadata={"description": "a page's `newer` cursor"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=PAGE_LIMIT))


class ConversationChange(Strict):
    status = fields.String(validate=validate.OneOf(["open", "done"]))
    assignee_id = user_id(allow_none=True, metadata={"description": "a person's id; null: unassigned"})
    snoozed_until = AwareTime(
        allow_none=True, metadata={"description": "snooze it until then (RFC 3339 with an offset); null: wake it"}
    )
    snoozed_until_reply = fields.Boolean(
        validate=validate.Equal(True), metadata={"description": "true: snooze it until the customer writes"}
    )


# --- messages ----------------------------------------------------------------------------


class MessageSchema(Schema):
    id = fields.Integer(required=True)
    conversation_id = fields.Integer(required=True)
    direction = fields.String(
        required=True, validate=validate.OneOf(["in", "out", "note"]), metadata={"description": "note: private"}
    )
    channel = fields.String(required=True)
    sender = fields.String(required=True)
    recipient = fields.String(allow_none=True, required=True)
    text = fields.String(required=True)
    sent_at = UtcDateTime(required=True, metadata={"description": "the provider's time (ours for a reply)"})
    received_at = UtcDateTime(required=True, metadata={"description": "when it arrived: the order of a thread"})
    status = fields.String(
        allow_none=True,
        required=True,
        metadata={
            "description": "a reply's: scheduled (held, missed, cancelled), queued, sending, sent, failed, unconfirmed, "
            "retrying; null inbound and for notes"
        },
    )
    delivery = fields.String(allow_none=True, required=True, metadata={"description": "the best delivery report"})
    problem = fields.String(allow_none=True, required=True)
    author = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "a reply's or note's writer: a person, or `API: <token name>`"},
    )
    price = fields.String(
        allow_none=True,
        required=True,
        metadata={
            "description": "a reply's cost from its delivery reports, a decimal such as 0.2 in the account's "
            "currency (an admin setting); null until a report priced it",
            "pattern": r"^[0-9]+(\.[0-9]+)?$",
        },
    )
    parts = fields.Integer(
        allow_none=True, required=True, metadata={"description": "a priced reply's parts (SMS segments); else null"}
    )


class MessagePageSchema(Schema):
    messages = fields.List(fields.Nested(MessageSchema), required=True, metadata={"description": "oldest first"})
    older = fields.Integer(
        allow_none=True, required=True, metadata={"description": "`before` for the earlier page; null: none"}
    )
    newer = fields.Integer(
        allow_none=True, required=True, metadata={"description": "`after` for the newer page; null: this is the newest"}
    )


class MessageQuery(Schema):
    before = message_id(in_body=False, metadata={"description": "messages before this id (a page's `older`)"})
    after = message_id(in_body=False, metadata={"description": "messages after this id (a page's `newer`)"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=PAGE_LIMIT))


# More than spaces, read alike by Python (which checks it) and by JSON Schema's ECMA regexes (which
# clients and Schemathesis read): Python's \s also takes \x1c-\x1f and \x85, ECMA's \ufeff.
NOT_BLANK = r"[\s\S]*[^\s\x1c-\x1f\x85\ufeff]"


class NewMessageSchema(Strict):
    """A message to add to a conversation. `kind` says which: "reply" (sent to the customer, now
    or at `send_at`) or "note" (private, for the team: never sent; `@username` mentions)."""

    kind = fields.String(load_default="reply", validate=validate.OneOf(["reply", "note"]))
    text = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=sms_length.MAX_TEXT),
            validate.Regexp(NOT_BLANK, error="Type a reply first."),
        ],
    )
    seen_message_id = message_id(
        metadata={
            "description": "the newest message the writer saw: a newer one from someone else holds the reply (409)"
        }
    )
    send_at = AwareTime(
        metadata={"description": "a reply only: send it then (RFC 3339 with an offset), not now: `status` scheduled"}
    )


class OutboundMessageSchema(Strict):
    """A message to any number: it starts or continues its conversation."""

    to = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^\+?[0-9][0-9 ().-]{2,31}$", error="A phone number: digits, + first if international."
        ),
        metadata={
            "description": "a phone number, in any usual format (`+372 5555 1234`); national ones in the default region"
        },
    )
    text = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=sms_length.MAX_TEXT),
            validate.Regexp(NOT_BLANK, error="Type the message first."),
        ],
    )
    channel = fields.String(required=True, validate=validate.OneOf(["sms", "viber"]))
    send_at = AwareTime(metadata={"description": "send it then (RFC 3339 with an offset), not now: `status` scheduled"})


class IdempotencyHeader(Schema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=validate.Regexp(r"^[!-~]{1,255}$", error="1 to 255 visible ASCII characters (a UUID will do)."),
        metadata={"description": "a retry with the same key answers the first result and sends nothing more"},
    )


# --- contacts ----------------------------------------------------------------------------


class ContactSchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "the contact's conversation"})
    name = fields.String(allow_none=True, required=True, attribute="contact_name")
    note = fields.String(allow_none=True, required=True, attribute="contact_note")
    numbers = fields.List(fields.String(), required=True)
    opted_out = fields.Boolean(required=True)
    opt_in_needs_admin = fields.Boolean(
        required=True,
        metadata={"description": "opting back in takes the admin scope and a reason (the customer's own STOP)"},
    )


class ContactChange(Strict):
    name = fields.String(allow_none=True, validate=validate.Length(max=CONTACT_NAME_LENGTH))
    note = fields.String(allow_none=True, validate=validate.Length(max=CONTACT_NOTE_LENGTH))


class OptInSchema(Strict):
    reason = fields.String(
        validate=validate.Length(max=OPT_IN_REASON_LENGTH),
        metadata={"description": "why; needed (with the admin scope) to lift a customer's own STOP"},
    )


class OptOutSchema(Strict):
    pass


# --- labels ------------------------------------------------------------------------------


class LabelSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    colour = fields.String(required=True, validate=validate.OneOf(LABEL_COLOURS))


class LabelListSchema(Schema):
    labels = fields.List(fields.Nested(LabelSchema), required=True, metadata={"description": "by name"})


class NewLabelSchema(Strict):
    name = fields.String(
        required=True,
        validate=validate.Length(min=1, max=LABEL_NAME_LENGTH),
        metadata={"description": "unique, case and accents aside; no comma"},
    )
    colour = fields.String(load_default="grey", validate=validate.OneOf(LABEL_COLOURS))


class LabelChange(Strict):
    name = fields.String(validate=validate.Length(min=1, max=LABEL_NAME_LENGTH))
    colour = fields.String(validate=validate.OneOf(LABEL_COLOURS))


# --- users -------------------------------------------------------------------------------


class UserSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    disabled = fields.Boolean(required=True)
    on_shift = fields.Boolean(required=True)


class UserListSchema(Schema):
    users = fields.List(fields.Nested(UserSchema), required=True)


class NewUserSchema(Strict):
    username = fields.String(required=True, validate=validate.Length(min=1, max=USERNAME_LENGTH))
    role = fields.String(load_default="agent", validate=validate.OneOf(ROLES))


class NewUserAnswer(Schema):
    user = fields.Nested(UserSchema, required=True)
    password_link = fields.String(required=True, metadata={"description": "one-time link to set a password"})
    link_expires_at = UtcDateTime(required=True)


class UserChange(Strict):
    role = fields.String(validate=validate.OneOf(ROLES))
    disabled = fields.Boolean()


# --- webhooks ----------------------------------------------------------------------------

EVENT_TYPE = fields.String(validate=validate.OneOf(list(EVENT_TYPES)))


class WebhookSchema(Schema):
    id = fields.Integer(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True, metadata={"description": "the event types it gets"})
    enabled = fields.Boolean(required=True)
    disabled_reason = fields.String(
        allow_none=True, required=True, metadata={"description": '"failing" when the app turned it off'}
    )
    created_at = UtcDateTime(required=True)


class WebhookListSchema(Schema):
    webhooks = fields.List(fields.Nested(WebhookSchema), required=True)


class WebhookSecretSchema(WebhookSchema):
    secret = fields.String(
        required=True, metadata={"description": "whsec_ and the base64 of 32 random bytes: shown this once"}
    )


class NewWebhookSchema(Strict):
    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=WEBHOOK_URL_LENGTH),
        metadata={"description": "https, resolving to public addresses only (or WEBHOOKS_ALLOWED_NETWORKS)"},
    )
    events = fields.List(EVENT_TYPE, required=True, validate=validate.Length(min=1))


class WebhookChange(Strict):
    url = fields.String(validate=validate.Length(min=1, max=WEBHOOK_URL_LENGTH))
    events = fields.List(EVENT_TYPE, validate=validate.Length(min=1))
    enabled = fields.Boolean()
