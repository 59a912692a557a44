"""The adapter to Messente's Omnichannel and Phonebook APIs: the only module that imports `messente-api`.

It turns our request (a number and a list of channel legs) into the library's, and the library's
answers and exceptions into three small results that say what a caller may do next:

- `Sent`: Messente accepted the message (201) and answered with its ids.
- `Refused`: nothing was sent. `retryable` says whether trying again later may work (429, 5xx,
  no connection) or not (400, 401: the request or the credentials must change first).
- `Unconfirmed`: the request may have reached Messente (no answer within the read timeout, the
  connection dropped after the request was written, 504 from a gateway). Never resend one
  automatically: a person decides.

Blacklist calls answer `Done` when the number ends up where asked (409 "already there" on add and
404 "not there" on delete count as done); both calls are idempotent, so a caller may repeat them
after `Unconfirmed`.

Facts relied on are from Messente's public Omnichannel and Phonebook API documentation. Two things
about the library (2.7.0) shape this module:

- Its `SMS` model only accepts `autoconvert` "full", "true" or "false", while the API documents
  "on", "full" and "off" (and the model's own description says so too). We send the documented
  "off" through the model's `additional_properties`, which its serializer writes as a plain field.
- It deserializes answers into strict models: a 201 whose answer has a field it doesn't expect
  (a null sender, a new channel) would raise after the message was sent. So answers are read
  raw (the `*_without_preload_content` calls) and parsed leniently here.

Each call builds its own `ApiClient` (and so its own urllib3 pool) and closes it afterwards. The
library's `ApiClient` holds no per-request state and urllib3's pool manager is thread-safe, so
sharing one would work; a fresh connection per call is chosen so that a send is never written on
a pooled keep-alive connection the server has already closed, which would turn into a false
`Unconfirmed`. The `Configuration` (URL and credentials) is built once and only read after that.

Nothing here logs; the password is kept only in the library's `Configuration` and never appears
in a result, a reason or `repr`.
"""

from __future__ import annotations

import errno
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from messente_api import (
    SMS,
    ApiClient,
    BlacklistApi,
    Configuration,
    NumberToBlacklist,
    Omnimessage,
    OmnimessageApi,
    OmnimessageMessagesInner,
    Viber,
    WhatsApp,
    WhatsAppText,
)
from messente_api.exceptions import ApiException
from pydantic import ValidationError
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

DEFAULT_URL = "https://api.messente.com/v1"
CHANNELS = ("sms", "viber", "whatsapp")
# The answer body is read whole; Messente's are small. A reason quotes at most this much of a body
# that isn't Messente's JSON (a proxy's HTML error page, say).
REASON_BODY_CHARS = 200


@dataclass(frozen=True)
class Leg:
    """One channel attempt; Omnichannel's messages[] is a fallback list, tried in order."""

    channel: str  # "sms" | "viber" | "whatsapp"
    text: str
    sender: str | None = None


@dataclass(frozen=True)
class Sent:
    omnimessage_id: str
    message_ids: tuple[tuple[str, str], ...]  # (channel, message_id) per leg, as the API answered


@dataclass(frozen=True)
class Refused:
    """The request did not send anything."""

    status: int | None  # HTTP status; None when no connection could be made
    reason: str  # for people: the API's own words, "rate limited (429)", "connection refused ..."
    retryable: bool  # 429, 5xx and connection failures: True; 400, 401 and other 4xx: False


@dataclass(frozen=True)
class Unconfirmed:
    """The request may have reached Messente: never resend automatically."""

    reason: str


@dataclass(frozen=True)
class Done:
    """A blacklist call that did what was asked; `already` when it was so before the call
    (409 on add, 404 on delete): an entry this call did not make is not ours to remove later."""

    already: bool = False


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes


class Messente:
    """Sends through the Omnichannel API and keeps the blacklist; safe to share between threads."""

    def __init__(
        self, url: str, username: str, password: str, connect_timeout: float = 5.0, read_timeout: float = 15.0
    ):
        if not (connect_timeout > 0 and read_timeout > 0):
            raise ValueError("timeouts must be positive")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"MESSENTE_API_URL must be an http(s) address, not {url!r}")
        self.url = url.rstrip("/")
        self.username = username
        # The library validates `_request_timeout` as strict floats: an int is refused.
        self._timeout = (float(connect_timeout), float(read_timeout))
        self._configuration = Configuration(host=self.url, username=username, password=password)
        # No retries inside urllib3: a retried POST could send twice, and the caller owns the
        # retry policy (Refused.retryable). Errors then surface as themselves, not MaxRetryError.
        # Typed as a count, but handed to urllib3 as it is, and urllib3 takes a Retry.
        self._configuration.retries = urllib3.Retry(total=False)  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Messente(url={self.url!r}, username={self.username!r})"

    # --- sending ------------------------------------------------------------------------------

    def send(self, to: str, legs: list[Leg], dlr_url: str | None = None) -> Sent | Refused | Unconfirmed:
        """Send one omnimessage: `legs` are tried in order until one is delivered."""
        if not legs:
            raise ValueError("a message needs at least one leg")
        try:
            omnimessage = Omnimessage(to=to, messages=[_message(leg) for leg in legs], dlr_url=dlr_url)
        except ValidationError as exc:
            return Refused(None, f"not a valid message: {_first_error(exc)}", retryable=False)
        answer = self._exchange(
            lambda client: OmnimessageApi(client).send_omnimessage_without_preload_content(
                omnimessage, _request_timeout=self._timeout
            ),
            maybe="the message may have been sent",
        )
        if not isinstance(answer, _Answer):
            return answer
        if 200 <= answer.status <= 299:
            return _sent(answer)
        if answer.status == 504:
            return Unconfirmed(
                f"a gateway timed out waiting for Messente (504){_words(answer, ': ')}; the message may have been sent"
            )
        return _refused(answer)

    # --- blacklist ----------------------------------------------------------------------------

    def add_to_blacklist(self, phone: str) -> Done | Refused | Unconfirmed:
        try:
            number = NumberToBlacklist(phone_number=phone)
        except ValidationError as exc:
            return Refused(None, f"not a valid number: {_first_error(exc)}", retryable=False)
        answer = self._exchange(
            lambda client: BlacklistApi(client).add_to_blacklist_without_preload_content(
                number, _request_timeout=self._timeout
            ),
            maybe="the number may have been added",
        )
        return _done(answer, also=409)

    def remove_from_blacklist(self, phone: str) -> Done | Refused | Unconfirmed:
        if not isinstance(phone, str) or not phone:
            return Refused(None, "not a valid number: empty", retryable=False)
        answer = self._exchange(
            lambda client: BlacklistApi(client).delete_from_blacklist_without_preload_content(
                phone, _request_timeout=self._timeout
            ),
            maybe="the number may have been removed",
        )
        return _done(answer, also=404)

    # --- one exchange -------------------------------------------------------------------------

    def _exchange(self, call, maybe: str) -> _Answer | Refused | Unconfirmed:
        """Run one library call on a fresh client: its status and body, or what went wrong.

        `maybe` ends the reason of an Unconfirmed: what may have happened anyway.
        """
        connect, read = self._timeout
        client = ApiClient(self._configuration)
        try:
            try:
                response = call(client)
                try:
                    return _Answer(response.status, response.data or b"")
                finally:
                    response.release_conn()
            except MaxRetryError as exc:  # not with retries off, but urllib3 wraps errors this way
                return _failure(exc.reason or exc, connect, read, maybe)
            except (HTTPError, ApiException, OSError) as exc:
                return _failure(exc, connect, read, maybe)
        finally:
            client.rest_client.pool_manager.clear()  # closes its sockets: ApiClient.__exit__ doesn't


def from_config(config) -> Messente | None:
    """The adapter configured by MESSENTE_API_*; None when the username or password is missing."""
    username = config.get("MESSENTE_API_USERNAME") or ""
    password = config.get("MESSENTE_API_PASSWORD") or ""
    if not username or not password:
        return None
    timeouts = {
        name: float(config[key])
        for name, key in (("connect_timeout", "MESSENTE_CONNECT_TIMEOUT"), ("read_timeout", "MESSENTE_READ_TIMEOUT"))
        if config.get(key)
    }
    return Messente(config.get("MESSENTE_API_URL") or DEFAULT_URL, username, password, **timeouts)


# --- our request to the library's ---------------------------------------------------------------


def _message(leg: Leg) -> OmnimessageMessagesInner:
    content: SMS | Viber | WhatsApp
    if leg.channel == "sms":
        # Sent as typed: non-GSM text goes as UCS-2, so sms_length's count and the bill agree.
        # The documented "off" goes through additional_properties (the model's enum lacks it).
        content = SMS(channel="sms", text=leg.text, sender=leg.sender, additional_properties={"autoconvert": "off"})
    elif leg.channel == "viber":
        content = Viber(channel="viber", text=leg.text, sender=leg.sender)
    elif leg.channel == "whatsapp":
        content = WhatsApp(channel="whatsapp", text=WhatsAppText(body=leg.text, preview_url=False), sender=leg.sender)
    else:
        raise ValueError(f"unknown channel {leg.channel!r}: one of {', '.join(CHANNELS)}")
    return OmnimessageMessagesInner(content)


# --- the library's answers and exceptions to ours ------------------------------------------------


def _failure(exc: BaseException, connect: float, read: float, maybe: str) -> Refused | Unconfirmed:
    """A transport failure: before anything was written (Refused) or maybe after (Unconfirmed)."""
    if isinstance(exc, NameResolutionError):
        return Refused(None, f"could not connect: {_os_reason(exc)}", retryable=True)
    if isinstance(exc, NewConnectionError):  # a subclass of ConnectTimeoutError: test it first
        if _errno(exc) == errno.ECONNREFUSED:
            return Refused(None, "connection refused (Messente's API not reachable)", retryable=True)
        return Refused(None, f"could not connect: {_os_reason(exc)}", retryable=True)
    if isinstance(exc, ConnectTimeoutError):
        return Refused(None, f"could not connect within {connect:g} s", retryable=True)
    if isinstance(exc, LocationValueError):
        return Refused(None, f"MESSENTE_API_URL is not a usable address: {exc}", retryable=False)
    if isinstance(exc, ApiException):
        # rest.py turns urllib3's SSLError into ApiException(status=0); in practice a handshake or
        # certificate failure, before the request is written. A person must look: not retryable.
        return Refused(None, f"TLS failure: {str(exc.reason).splitlines()[-1]}", retryable=False)
    if isinstance(exc, ReadTimeoutError):
        return Unconfirmed(f"no answer within {read:g} s; {maybe}")
    if isinstance(exc, ProtocolError):
        return Unconfirmed(f"the connection dropped before an answer ({_os_reason(exc)}); {maybe}")
    return Unconfirmed(f"{exc.__class__.__name__} before an answer; {maybe}")


def _sent(answer: _Answer) -> Sent | Unconfirmed:
    """A 2xx answer, read leniently: the message went, whatever else the answer holds."""
    try:
        data = json.loads(answer.body)
        omnimessage_id = data["omnimessage_id"]
        message_ids = tuple((str(m["channel"]), str(m["message_id"])) for m in data.get("messages") or [])
        if not isinstance(omnimessage_id, str) or not omnimessage_id:
            raise ValueError("omnimessage_id")
    except (ValueError, KeyError, TypeError, AttributeError):
        return Unconfirmed(
            f"Messente accepted the message ({answer.status}) but its answer could not be read: {_snippet(answer.body)}"
        )
    return Sent(omnimessage_id, message_ids)


def _refused(answer: _Answer) -> Refused:
    status = answer.status
    if status == 429:
        return Refused(429, f"rate limited (429){_words(answer, ': ')}", retryable=True)
    if 500 <= status <= 599:
        return Refused(status, f"Messente server error ({status}){_words(answer, ': ')}", retryable=True)
    return Refused(status, _words(answer) or f"HTTP {status}: {_snippet(answer.body)}", retryable=False)


def _done(answer: _Answer | Refused | Unconfirmed, also: int) -> Done | Refused | Unconfirmed:
    if not isinstance(answer, _Answer):
        return answer
    if 200 <= answer.status <= 299 or answer.status == also:
        return Done(already=answer.status == also)
    if answer.status == 504:
        return Unconfirmed(f"a gateway timed out waiting for Messente (504){_words(answer, ': ')}")
    return _refused(answer)


def _words(answer: _Answer, prefix: str = "") -> str:
    """The API's own words: each of errors[]'s title and detail (and source), joined."""
    try:
        errors = json.loads(answer.body)["errors"]
        parts = []
        for error in errors:
            title, detail, source = (error.get(key) for key in ("title", "detail", "source"))
            words = ": ".join(str(part) for part in (title, detail) if part)
            if source:
                words += f" ({source})"
            if words:
                parts.append(words)
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    return prefix + "; ".join(parts) if parts else ""


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return "(empty)"
    return text if len(text) <= REASON_BODY_CHARS else text[:REASON_BODY_CHARS] + "..."


def _errno(exc: BaseException | None) -> int | None:
    """The OS error number under a urllib3 exception, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None


def _os_reason(exc: BaseException) -> str:
    """A short reason from a urllib3 exception: the last line of its message, without objects."""
    if isinstance(exc, ProtocolError) and len(exc.args) > 1:
        inner = exc.args[1]
        return f"{inner.__class__.__name__}: {inner}" if str(inner) else inner.__class__.__name__
    # Without urllib3's "HTTPSConnection(host='...', port=443): " (or "<... at 0x...>: ") prefix.
    return re.sub(r"^<?\w*Connection(Pool)?\([^)]*\)( at 0x[0-9a-f]+)?>?: ", "", str(exc))


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))
