"""app/replies/messente.py through a real fake Messente API on 127.0.0.1 (tests/fake_messente.py).

Nothing here patches the library: every call goes over HTTP to the fake, which parses what
arrives with the library's own models. No database is needed, so the `app` fixture isn't used.
"""

import concurrent.futures
import json
import time
import urllib.error
import urllib.request
from base64 import b64encode

import pytest

from app import config
from app.replies.messente import Done, Leg, Messente, Refused, Sent, Unconfirmed, from_config
from fake_messente import FakeMessente

TO = "+37255512345"
DLR_URL = "https://inbox.example.com/callbacks/delivery"
READ_TIMEOUT = 0.5  # short, so that "no answer" tests take about this long
SLACK = 1.0  # scheduling noise allowed on top of a timeout


def client(fake: FakeMessente, password: str = "api-password", **timeouts) -> Messente:
    return Messente(
        fake.url, "api-user", password, **{"connect_timeout": 2.0, "read_timeout": READ_TIMEOUT, **timeouts}
    )


# --- sending -----------------------------------------------------------------------------------


def test_an_sms_with_a_whatsapp_fallback_arrives_once_with_basic_auth_and_the_exact_body(messente):
    result = client(messente).send(
        TO,
        [
            Leg("sms", "Tere! Kas sobib homme kell 10? õ", sender="Inbox"),
            Leg("whatsapp", "Tere! Kas sobib homme kell 10? 👋", sender="+37250000000"),
        ],
        dlr_url=DLR_URL,
    )

    [request] = messente.requests
    assert (request.method, request.path, request.status) == ("POST", "/v1/omnimessage", 201)
    assert request.basic_auth == ("api-user", "api-password")
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "to": TO,
        "messages": [
            {"channel": "sms", "text": "Tere! Kas sobib homme kell 10? õ", "sender": "Inbox", "autoconvert": "off"},
            {
                "channel": "whatsapp",
                "sender": "+37250000000",
                "text": {"body": "Tere! Kas sobib homme kell 10? 👋", "preview_url": False},
            },
        ],
        "dlr_url": DLR_URL,
    }
    assert result == Sent(
        request.answer["omnimessage_id"], tuple((m["channel"], m["message_id"]) for m in request.answer["messages"])
    )
    assert [channel for channel, _ in result.message_ids] == ["sms", "whatsapp"]
    assert b"api-password" not in request.body


def test_a_viber_leg_sends_its_text_field_and_a_leg_without_sender_sends_none(messente):
    result = client(messente).send(TO, [Leg("viber", "Tere!"), Leg("sms", "Tere!")])

    assert isinstance(result, Sent)
    [request] = messente.requests
    assert request.json == {
        "to": TO,
        "messages": [{"channel": "viber", "text": "Tere!"}, {"channel": "sms", "text": "Tere!", "autoconvert": "off"}],
    }
    assert "dlr_url" not in request.json


@pytest.mark.parametrize(
    "behaviour, status, words, retryable",
    [
        ("400", 400, "Invalid data: Invalid phone number (payload[to])", False),
        ("401", 401, "Unauthorized: Wrong or missing API username or password", False),
        ("429", 429, "rate limited (429)", True),
        ("500", 500, "Messente server error (500): Internal Server Error: Internal Server Error", True),
        ("503", 503, "Messente server error (503)", True),
    ],
)
def test_each_refusal_maps_to_a_result_with_the_apis_words_and_is_asked_once(
    messente, behaviour, status, words, retryable
):
    messente.behave(behaviour)

    result = client(messente).send(TO, [Leg("sms", "Tere!")])

    assert isinstance(result, Refused)
    assert (result.status, result.retryable) == (status, retryable)
    assert result.reason.startswith(words)
    assert len(messente.requests) == 1  # no retries inside the library or urllib3


def test_a_wrong_password_is_refused_with_the_apis_words_and_never_shown(messente):
    result = client(messente, password="wrong-password").send(TO, [Leg("sms", "Tere!")])

    assert result == Refused(401, "Unauthorized: Wrong or missing API username or password", retryable=False)
    assert messente.requests[0].basic_auth == ("api-user", "wrong-password")
    assert "wrong-password" not in repr(client(messente, password="wrong-password"))


def test_a_number_the_api_rejects_is_refused_with_the_field_it_names(messente):
    result = client(messente).send("5551234", [Leg("sms", "Tere!")])

    assert result == Refused(400, "Invalid data: Invalid phone number (payload[to])", retryable=False)


def test_a_slow_answer_is_unconfirmed_after_the_read_timeout_and_never_resent(messente):
    messente.behave("slow")  # answers after 2 s; the client waits READ_TIMEOUT

    started = time.monotonic()
    result = client(messente).send(TO, [Leg("sms", "Tere!")])
    elapsed = time.monotonic() - started

    assert isinstance(result, Unconfirmed)
    assert "may have been sent" in result.reason
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + SLACK
    assert len(messente.requests) == 1


def test_no_answer_at_all_is_unconfirmed_after_the_read_timeout(messente):
    messente.behave("silent")

    started = time.monotonic()
    result = client(messente).send(TO, [Leg("sms", "Tere!")])

    assert isinstance(result, Unconfirmed)
    assert READ_TIMEOUT <= time.monotonic() - started < READ_TIMEOUT + SLACK
    assert len(messente.requests) == 1


def test_a_connection_closed_after_the_request_was_written_is_unconfirmed():
    with FakeMessente(silent_seconds=0.05) as fake:  # reads the request, closes without answering
        fake.behave("silent")
        result = client(fake, read_timeout=5.0).send(TO, [Leg("sms", "Tere!")])

    assert isinstance(result, Unconfirmed)
    assert "connection dropped" in result.reason
    assert len(fake.requests) == 1


def test_a_gateway_timeout_is_unconfirmed_not_refused(messente):
    messente.behave("504")

    result = client(messente).send(TO, [Leg("sms", "Tere!")])

    assert isinstance(result, Unconfirmed)
    assert "504" in result.reason


def test_messente_down_is_refused_as_retryable_and_works_again_when_up(messente):
    messente.down()

    started = time.monotonic()
    result = client(messente).send(TO, [Leg("sms", "Tere!")])

    assert result == Refused(None, "connection refused (Messente's API not reachable)", retryable=True)
    assert time.monotonic() - started < SLACK
    messente.up()
    assert isinstance(client(messente).send(TO, [Leg("sms", "Tere!")]), Sent)
    assert len(messente.requests) == 1


def test_a_host_that_does_not_resolve_is_refused_as_retryable():
    result = Messente("http://no-such-host.invalid/v1", "api-user", "api-password", 2.0, 2.0).send(
        TO, [Leg("sms", "Tere!")]
    )

    assert isinstance(result, Refused)
    assert (result.status, result.retryable) == (None, True)
    assert result.reason.startswith("could not connect: Failed to resolve 'no-such-host.invalid'")


def test_the_next_n_behaviours_then_ok_again(messente):
    messente.behave("429", times=2)
    sender = client(messente)

    results = [sender.send(TO, [Leg("sms", "Tere!")]) for _ in range(3)]

    assert [type(result) for result in results] == [Refused, Refused, Sent]
    assert [request.status for request in messente.requests] == [429, 429, 201]


def test_one_messente_object_serves_many_threads_at_once(messente):
    sender = client(messente, read_timeout=5.0)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: sender.send(TO, [Leg("sms", f"Tere {i}!")]), range(32)))

    assert all(isinstance(result, Sent) for result in results)
    assert len({result.omnimessage_id for result in results}) == 32
    assert sorted(request.json["messages"][0]["text"] for request in messente.requests) == sorted(
        f"Tere {i}!" for i in range(32)
    )
    assert messente.errors == []


def test_integer_timeouts_are_accepted_though_the_library_wants_floats(messente):
    assert isinstance(client(messente, connect_timeout=2, read_timeout=2).send(TO, [Leg("sms", "x")]), Sent)


def test_an_unknown_channel_or_no_legs_is_a_programming_error(messente):
    with pytest.raises(ValueError, match="channel"):
        client(messente).send(TO, [Leg("telegram", "Tere!")])
    with pytest.raises(ValueError, match="leg"):
        client(messente).send(TO, [])
    assert messente.requests == []


def test_a_password_appears_in_no_result_or_repr(messente):
    sender = client(messente, password="s3cret-pass")
    results = [sender.send(TO, [Leg("sms", "x")])]
    messente.behave("silent", times=1)
    results.append(sender.send(TO, [Leg("sms", "x")]))
    messente.down()
    results.append(sender.send(TO, [Leg("sms", "x")]))
    results.append(sender.add_to_blacklist(TO))

    assert "s3cret-pass" not in repr(sender) + repr(results)


# --- blacklist ---------------------------------------------------------------------------------


def test_blacklist_add_and_remove_count_already_there_and_already_gone_as_done(messente):
    sender = client(messente)

    assert sender.add_to_blacklist(TO) == Done()
    assert messente.blacklist == {TO}
    assert sender.add_to_blacklist(TO) == Done(already=True)  # 409
    assert sender.remove_from_blacklist(TO) == Done()
    assert messente.blacklist == set()
    assert sender.remove_from_blacklist(TO) == Done(already=True)  # 404

    requests = messente.requests
    assert [(r.method, r.path, r.status) for r in requests] == [
        ("POST", "/v1/phonebook/blacklist", 204),
        ("POST", "/v1/phonebook/blacklist", 409),
        ("DELETE", "/v1/phonebook/blacklist/%2B37255512345", 204),
        ("DELETE", "/v1/phonebook/blacklist/%2B37255512345", 404),
    ]
    assert requests[0].json == {"phoneNumber": TO}
    assert all(r.basic_auth == ("api-user", "api-password") for r in requests)


@pytest.mark.parametrize(
    "behaviour, expected",
    [
        ("401", Refused(401, "Unauthorized: Wrong or missing API username or password", retryable=False)),
        ("400", Refused(400, "Invalid data: Invalid phone number", retryable=False)),
        ("429", Refused(429, "rate limited (429)", retryable=True)),
        ("500", Refused(500, "Messente server error (500): General error: Internal Server Error", retryable=True)),
    ],
)
def test_blacklist_failures_map_like_sending(messente, behaviour, expected):
    messente.behave(behaviour)

    assert client(messente).add_to_blacklist(TO) == expected
    assert client(messente).remove_from_blacklist(TO) == expected


def test_blacklist_without_an_answer_is_unconfirmed_and_when_down_refused(messente):
    messente.behave("silent")
    assert isinstance(client(messente).add_to_blacklist(TO), Unconfirmed)
    assert isinstance(client(messente).remove_from_blacklist(TO), Unconfirmed)
    messente.down()
    assert client(messente).add_to_blacklist(TO) == Refused(
        None, "connection refused (Messente's API not reachable)", retryable=True
    )


# --- configuration -----------------------------------------------------------------------------


def test_from_config_needs_both_username_and_password():
    settings = config.defaults("/nonexistent")
    assert from_config(settings) is None
    assert from_config({**settings, "MESSENTE_API_USERNAME": "api-user"}) is None
    assert from_config({**settings, "MESSENTE_API_PASSWORD": "api-password"}) is None

    messente = from_config({**settings, "MESSENTE_API_USERNAME": "api-user", "MESSENTE_API_PASSWORD": "pw"})
    assert isinstance(messente, Messente)
    assert messente.url == "https://api.messente.com/v1"
    assert "pw" not in repr(messente).replace("https", "")
    quick = from_config(
        {
            **settings,
            "MESSENTE_API_USERNAME": "api-user",
            "MESSENTE_API_PASSWORD": "pw",
            "MESSENTE_CONNECT_TIMEOUT": 1,
            "MESSENTE_READ_TIMEOUT": 2.5,
        }
    )
    assert quick._timeout == (1.0, 2.5)


def test_from_config_through_the_environment_reaches_the_fake(messente):
    environ = {
        "MESSENTE_API_URL": messente.url,
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": "api-password",
        "MESSENTE_SMS_SENDER": "Inbox",
    }
    settings = {**config.defaults("/nonexistent"), **config.from_environment(environ)}
    assert settings["MESSENTE_SMS_SENDER"] == "Inbox"

    result = from_config(settings).send(TO, [Leg("sms", "Tere!", sender=settings["MESSENTE_SMS_SENDER"])])

    assert isinstance(result, Sent)


# --- the fake itself ---------------------------------------------------------------------------


def post(fake: FakeMessente, body, path="/omnimessage", password="api-password"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        fake.url + path,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + b64encode(f"api-user:{password}".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")


@pytest.mark.parametrize(
    "message, source",
    [
        ({"channel": "sms", "text": "x", "autoconvert": "false"}, "payload[messages][0][autoconvert]"),
        ({"channel": "sms", "text": ""}, "payload[messages][0][text]"),
        ({"text": "x"}, "payload[messages][0][channel]"),
        ({"channel": "whatsapp", "text": "a plain string"}, "payload"),
        (
            {"channel": "whatsapp", "text": {"body": "x"}, "image": {"url": "https://example.com/a.png"}},
            "payload[messages][0]",
        ),
        ({"channel": "sms", "txt": "typo"}, "payload[messages][0][text]"),
        ({"channel": "viber", "text": "x", "autoconvert": "off"}, "payload"),
        ({"channel": "telegram", "text": "x"}, "payload"),
    ],
)
def test_the_fake_refuses_a_wrong_shape_with_400_and_records_it(messente, message, source):
    status, answer = post(messente, {"to": TO, "messages": [message]})

    assert status == 400
    [error] = answer["errors"]
    assert (error["title"] in ("Invalid data", "Missing data"), error["source"]) == (True, source)
    assert messente.requests[0].status == 400


def test_the_fake_refuses_unknown_top_level_fields_and_bodies_that_are_not_json(messente):
    assert post(messente, {"to": TO, "messages": [{"channel": "sms", "text": "x"}], "dlr_ur": "x"})[0] == 400
    assert post(messente, b"not json")[0] == 400
    assert post(messente, {"to": TO, "messages": []})[0] == 400


def test_the_fake_checks_basic_auth_before_anything_else(messente):
    status, answer = post(messente, {"to": TO, "messages": [{"channel": "sms", "text": "x"}]}, password="nope")

    assert status == 401
    assert answer["errors"][0]["code"] == "103"


def test_the_fake_answers_like_the_docs(messente):
    status, answer = post(
        messente,
        {"to": TO, "messages": [{"channel": "sms", "text": "x", "sender": "Inbox"}, {"channel": "viber", "text": "x"}]},
    )

    assert status == 201
    assert set(answer) == {"messages", "omnimessage_id", "to"}
    assert [(m["channel"], m["sender"]) for m in answer["messages"]] == [("sms", "Inbox"), ("viber", "Messente")]
    assert len({answer["omnimessage_id"], *(m["message_id"] for m in answer["messages"])}) == 3


def test_the_fake_stops_promptly_even_with_a_request_waiting():
    fake = FakeMessente(silent_seconds=30).start()
    fake.behave("silent")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client(fake, read_timeout=30.0).send, TO, [Leg("sms", "x")])
        fake.wait_for_requests(1)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < SLACK
        assert isinstance(waiting.result(timeout=5), Unconfirmed)


def test_an_address_that_is_not_http_is_refused_at_once():
    for url in ("api.messente.com/v1", "ftp://api.messente.com/v1", "https://"):
        with pytest.raises(ValueError, match="MESSENTE_API_URL"):
            Messente(url, "api-user", "api-password")
