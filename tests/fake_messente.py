"""A fake Messente API as a real HTTP server on 127.0.0.1: Omnichannel sending and the blacklist.

    with FakeMessente("api-user", "api-password") as fake:      # or the `messente` fixture
        app_config["MESSENTE_API_URL"] = fake.url                # http://127.0.0.1:PORT/v1
        fake.behave("429", times=2)     # the next two requests answer 429, then "ok" again
        fake.behave("500")              # every request from now on answers 500
        fake.down(); ...; fake.up()     # stop listening (connection refused), then listen again
        fake.wait_for_requests(1)       # the requests, once at least one has arrived (bounded)
        fake.requests[0].json           # method, path, json, body, headers, at, behaviour, status

Behaviours, per request, checked before anything else:
- "ok": answer like Messente (below);
- "400", "401", "429", "500": answer that status with Messente's errors[] (429: no JSON body);
  any other status as three digits ("503", "504", "409", ...) answers it with a generic errors[];
- "slow": wait `slow_seconds` (longer than the client's read timeout), then answer as "ok";
- "silent": read the request, never answer, close the connection after `silent_seconds`.

"ok" checks HTTP Basic auth (401 with errors[] when wrong) and then serves
- `POST /v1/omnimessage`: the body is parsed with the library's own model
  (`messente_api.Omnimessage.from_json`), stricter than the model: every message needs its
  `channel`, no field the model doesn't know (a typo would otherwise land in
  additional_properties), SMS `autoconvert` one of the documented "on" | "full" | "off" (the
  library's enum says "full" | "true" | "false", so it is checked here and taken out before the
  model sees it), SMS text not empty, WhatsApp exactly one kind of content, `to` in E.164. A wrong
  shape answers 400 with errors[] and is recorded like any other request. Otherwise 201
  `{"messages": [{"channel", "message_id", "sender"}], "omnimessage_id", "to"}` with fresh UUIDs.
- `POST /v1/phonebook/blacklist` `{"phoneNumber": ...}`: 204, or 409 when already there;
  `DELETE /v1/phonebook/blacklist/{phone}`: 204, or 404 when absent; `GET` the same path: 204 / 404;
  `GET /v1/phonebook/blacklist`: 200 `{"phoneNumbers": [...]}`. `.blacklist` is a copy of the set.

Every wait is bounded and `stop()` ends waiting handlers at once; each answer closes its connection.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from messente_api import NumberToBlacklist, Omnimessage
from pydantic import ValidationError

BEHAVIOURS = ("ok", "400", "401", "429", "500", "slow", "silent")  # and any status: "503", "504", ...
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
AUTOCONVERT = ("on", "full", "off")  # as documented; the library's model enum differs
WHATSAPP_CONTENT = ("text", "template", "image", "video", "audio", "document", "sticker")
MAX_BODY = 1024 * 1024


@dataclass
class Request:
    """One request as the fake read it.

    `status` and `answer` are what the fake answered, set just before it writes the answer (so
    already there when the client has it; a "slow" answer is set even if the client gave up);
    None while it hasn't answered, and for "silent".
    """

    method: str
    path: str  # as sent, percent-encoding kept (a phone number in a path arrives as %2B...)
    json: Any  # the parsed body; None when empty or not JSON
    body: bytes
    headers: dict[str, str]  # names lower-cased
    at: float  # time.monotonic() when the request had been read whole
    behaviour: str
    status: int | None = None
    answer: Any = None  # the JSON answered, if any

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(username, password) from the Authorization header, if it is HTTP Basic."""
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:
            return None
        return (username, password) if sep else None


@dataclass
class _Answer:
    status: int
    data: Any = None  # JSON-able, or None for no body
    text: str | None = None  # a plain-text body instead
    headers: dict = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # stop() joins every handler thread: each one's waits are bounded
    block_on_close = True
    request_queue_size = 128  # socketserver's 5 drops connections from a burst of clients

    def __init__(self, address, fake: FakeMessente, closing: threading.Event):
        self.fake, self.closing = fake, closing
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):  # keep tracebacks for the test, not stderr
        import traceback

        self.fake._record_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # a client that stops sending mid-request frees its thread after this long
    server: _Server

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def _handle(self):
        fake, closing = self.server.fake, self.server.closing
        self.close_connection = True
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        behaviour = fake._next_behaviour()
        request = Request(
            self.command,
            self.path,
            parsed,
            body,
            {name.lower(): value for name, value in self.headers.items()},
            time.monotonic(),
            behaviour,
        )
        fake._record(request)
        if behaviour == "silent":
            closing.wait(fake.silent_seconds)
            return  # the server closes the connection without an answer
        if behaviour == "slow":
            if closing.wait(fake.slow_seconds):
                return
        answer = fake._answer(request, behaviour)
        payload = b""
        headers = {"Connection": "close", **answer.headers}
        if answer.data is not None:
            payload = json.dumps(answer.data).encode()
            headers["Content-Type"] = "application/json"
        elif answer.text is not None:
            payload = answer.text.encode()
            headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = str(len(payload))
        fake._answered(request, answer)  # before the client can see it, so tests may look at once
        try:
            self.send_response(answer.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:  # the client gave up (a read timeout): nobody to answer
            pass


class FakeMessente:
    def __init__(
        self,
        username: str = "api-user",
        password: str = "api-password",
        *,
        slow_seconds: float = 2.0,
        silent_seconds: float = 3.0,
        default_sender: str = "Messente",
    ):
        self.username, self.password = username, password
        self.slow_seconds, self.silent_seconds = slow_seconds, silent_seconds
        self.default_sender = default_sender
        self.port: int | None = None
        self._changed = threading.Condition()
        self._requests: list[Request] = []
        self._errors: list[str] = []
        self._blacklist: set[str] = set()
        self._default = "ok"
        self._queue: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- life -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """What the app puts in MESSENTE_API_URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeMessente:
        self._listen(self.port or 0)
        return self

    def stop(self):
        """Stop listening and end every handler (waiting ones at once)."""
        if self._server is not None:
            self._server.closing.set()
            self._server.shutdown()
            self._server.server_close()  # joins the handler threads
            self._thread.join(timeout=10)
            self._server = self._thread = None

    def down(self):
        """Simulate Messente being down: nothing listens on the port (connection refused)."""
        self.stop()

    def up(self):
        """Listen again on the same port after down()."""
        if self._server is None:
            self._listen(self.port)

    def __enter__(self) -> FakeMessente:
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _listen(self, port: int):
        self._server = _Server(("127.0.0.1", port), self, threading.Event())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-messente-{self.port}",
            daemon=True,
        )
        self._thread.start()

    # --- behaviour ------------------------------------------------------------------------------

    def behave(self, behaviour: str, times: int | None = None):
        """Answer the next `times` requests this way (then as before), or all from now on."""
        if behaviour not in BEHAVIOURS and not re.fullmatch(r"[1-5][0-9][0-9]", behaviour):
            raise ValueError(f"unknown behaviour {behaviour!r}: one of {BEHAVIOURS} or an HTTP status")
        with self._changed:
            if times is None:
                self._default, self._queue = behaviour, []
            else:
                self._queue.extend([behaviour] * times)

    def _next_behaviour(self) -> str:
        with self._changed:
            return self._queue.pop(0) if self._queue else self._default

    # --- what happened --------------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._changed:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Tracebacks of anything that went wrong inside the fake (should stay empty)."""
        with self._changed:
            return list(self._errors)

    @property
    def blacklist(self) -> set[str]:
        with self._changed:
            return set(self._blacklist)

    def add_to_blacklist(self, *phones: str):
        """Put numbers on the blacklist directly, as if added earlier."""
        with self._changed:
            self._blacklist.update(phones)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        """The requests once at least `count` have been read whole; AssertionError after `timeout`."""
        return self.wait_until(lambda requests: len(requests) >= count, timeout, f"{count} request(s)")

    def wait_until(self, condition, timeout: float = 5.0, what: str = "the condition") -> list[Request]:
        """Wait until condition(requests) is true (re-checked on every request and answer)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self._requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"the fake Messente did not see {what} within {timeout} s; "
                        f"it saw {len(self._requests)} request(s)"
                    )
                self._changed.wait(left)
            return list(self._requests)

    def _record(self, request: Request):
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def _answered(self, request: Request, answer: _Answer):
        with self._changed:
            request.status, request.answer = answer.status, answer.data
            self._changed.notify_all()

    def _record_error(self, text: str):
        with self._changed:
            self._errors.append(text)
            self._changed.notify_all()

    # --- answers --------------------------------------------------------------------------------

    def _answer(self, request: Request, behaviour: str) -> _Answer:
        path = urlsplit(request.path).path
        phonebook = path.startswith("/v1/phonebook/")
        unauthorized = (
            _phonebook_error(401, "Unauthorized", "Wrong or missing API username or password", "202")
            if phonebook
            else _omni_error(401, "Unauthorized", "Wrong or missing API username or password", "103")
        )
        if behaviour == "400":
            return (
                _phonebook_error(400, "Invalid data", "Invalid phone number", "201")
                if phonebook
                else _omni_error(400, "Invalid data", "Invalid phone number", "105", "payload[to]")
            )
        if behaviour == "401":
            return unauthorized
        if behaviour == "429":
            return _Answer(429, text="Too Many Requests", headers={"Retry-After": "1"})
        if behaviour == "500":
            return (
                _phonebook_error(500, "General error", "Internal Server Error", "205")
                if phonebook
                else _omni_error(500, "Internal Server Error", "Internal Server Error", "104")
            )
        if behaviour.isdigit():
            status = int(behaviour)
            return (
                _phonebook_error(status, "General error", f"HTTP {status}", "205")
                if phonebook
                else _omni_error(status, "Internal Server Error", f"HTTP {status}", "104")
            )
        if request.basic_auth != (self.username, self.password):
            return unauthorized

        if path == "/v1/omnimessage":
            return self._omnimessage(request) if request.method == "POST" else _not_allowed()
        if path == "/v1/phonebook/blacklist":
            if request.method == "POST":
                return self._blacklist_add(request)
            if request.method == "GET":
                with self._changed:
                    return _Answer(200, {"phoneNumbers": sorted(self._blacklist)})
            return _not_allowed(phonebook=True)
        if path.startswith("/v1/phonebook/blacklist/"):
            phone = unquote(path.removeprefix("/v1/phonebook/blacklist/"))
            with self._changed:
                there = phone in self._blacklist
                if request.method == "DELETE" and there:
                    self._blacklist.discard(phone)
            if request.method not in ("GET", "DELETE"):
                return _not_allowed(phonebook=True)
            return (
                _Answer(204)
                if there
                else _phonebook_error(404, "Missing resource", "Phone number not found in blacklist", "203")
            )
        return _omni_error(404, "Not found", f"No such resource: {path}", "101")

    def _omnimessage(self, request: Request) -> _Answer:
        problem = omnimessage_problem(request.json)
        if problem:
            return _omni_error(
                400, problem[0], problem[1], "106" if problem[0] == "Missing data" else "105", problem[2]
            )
        legs = request.json["messages"]
        return _Answer(
            201,
            {
                "messages": [
                    {
                        "channel": leg["channel"],
                        "message_id": str(uuid.uuid4()),
                        "sender": leg.get("sender") or self.default_sender,
                    }
                    for leg in legs
                ],
                "omnimessage_id": str(uuid.uuid4()),
                "to": request.json["to"],
            },
        )

    def _blacklist_add(self, request: Request) -> _Answer:
        try:
            number = NumberToBlacklist.from_json(request.body.decode())
            if number.additional_properties:
                raise ValueError(f"unknown fields {sorted(number.additional_properties)}")
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            return _phonebook_error(400, "Invalid data", _first_line(exc), "201")
        if not E164.fullmatch(number.phone_number):
            return _phonebook_error(400, "Invalid data", "Invalid phone number", "201")
        with self._changed:
            if number.phone_number in self._blacklist:
                return _phonebook_error(409, "Conflict", "Phone number already in blacklist", "204")
            self._blacklist.add(number.phone_number)
        return _Answer(204)


def omnimessage_problem(body: Any) -> tuple[str, str, str] | None:
    """(title, detail, source) of what is wrong with an omnimessage body, or None when it is fine."""
    if not isinstance(body, dict):
        return "Invalid data", "The body must be a JSON object", "payload"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Missing data", "At least one message is required", "payload[messages]"
    checked = dict(body, messages=[])
    for i, message in enumerate(messages):
        where = f"payload[messages][{i}]"
        if not isinstance(message, dict):
            return "Invalid data", "A message must be a JSON object", where
        if "channel" not in message:
            return "Missing data", "channel is required", f"{where}[channel]"
        message = dict(message)
        if message["channel"] == "sms":
            if "autoconvert" in message and message.pop("autoconvert") not in AUTOCONVERT:
                return "Invalid data", f"autoconvert must be one of {', '.join(AUTOCONVERT)}", f"{where}[autoconvert]"
            if not message.get("text"):
                return "Missing data", "text is required", f"{where}[text]"
        if message["channel"] == "whatsapp":
            kinds = [kind for kind in WHATSAPP_CONTENT if message.get(kind) is not None]
            if len(kinds) != 1:
                return "Invalid data", f"exactly one of {', '.join(WHATSAPP_CONTENT)} is required", where
        checked["messages"].append(message)
    try:
        model = Omnimessage.from_json(json.dumps(checked))
    except (ValidationError, ValueError, TypeError, KeyError) as exc:
        return "Invalid data", _first_line(exc), "payload"
    unknown = dict(model.additional_properties)
    for i, inner in enumerate(model.messages):
        content = inner.actual_instance
        unknown.update({f"messages[{i}].{key}": value for key, value in content.additional_properties.items()})
        text = getattr(content, "text", None)
        if hasattr(text, "additional_properties"):
            unknown.update({f"messages[{i}].text.{key}": value for key, value in text.additional_properties.items()})
    if unknown:
        return "Invalid data", f"Unknown field(s): {', '.join(sorted(unknown))}", "payload"
    if not isinstance(body.get("to"), str) or not E164.fullmatch(body["to"]):
        return "Invalid data", "Invalid phone number", "payload[to]"
    return None


def _omni_error(status: int, title: str, detail: str, code: str, source: str | None = None) -> _Answer:
    return _Answer(status, {"errors": [{"title": title, "detail": detail, "code": code, "source": source}]})


def _phonebook_error(status: int, title: str, detail: str, code: str) -> _Answer:
    return _Answer(status, {"errors": [{"title": title, "detail": detail, "code": code}]})


def _not_allowed(phonebook: bool = False) -> _Answer:
    if phonebook:
        return _phonebook_error(405, "Client error", "Method not allowed", "244")
    return _omni_error(405, "Method not allowed", "Method not allowed", "107")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
