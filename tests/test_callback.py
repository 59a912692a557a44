"""POST /callbacks/inbound: signatures, storage exactly once, and every refusal."""

import json
import logging
import socket
import threading
import urllib.request
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import clock
from app.callbacks import group_commit, ingest
from app.db.folding import clean_text
from app.db.models import Conversation, DailyCount, DeadLetter, Message
from app.extensions import db
from conftest import (
    SECRET,
    SIGNATURES,
    VECTORS,
    body_for,
    conversation_of,
    create_tables,
    make_app,
    signed_headers,
)


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def stored(app, msg_id: str) -> Message | None:
    with app.app_context():
        return db.session.scalar(sa.select(Message).where(Message.msg_id == msg_id))


@pytest.mark.parametrize("vector", SIGNATURES["vectors"], ids=lambda v: v["name"])
def test_signature_vectors(app, deliver, vector):
    body = (VECTORS / vector["body_file"]).read_bytes()
    response = deliver(body, signature=vector["signature"])
    if vector["valid"]:
        assert response.status_code == 200
        assert response.json == {"status": "stored"}
        assert stored(app, json.loads(body)["msg_id"]).raw_body == body
    else:
        assert response.status_code == 401
        assert "error" in response.json
        assert count(app, Message) == 0 and count(app, DeadLetter) == 0


def test_stores_every_field_of_the_providers_example(app, deliver):
    body = (VECTORS / "seed-example.json").read_bytes()
    assert deliver(body).json == {"status": "stored"}
    message = stored(app, "1f5197ec-b4d7-4d5f-8bba-e005d1cadba1")
    assert message.sub_msg_id == "d276e75e-e9f5-4b44-88aa-d5c7b38a1e4a"
    assert message.channel == "sms"
    assert message.recipient == "1234"
    assert message.sent_at == datetime(2021, 2, 23, 14, 51, 13)
    assert message.text == "This is a test message content"
    assert message.sender == "+44000000000"
    assert message.raw_body == body
    assert (clock.now() - message.received_at).total_seconds() < 60


def test_same_msg_id_twice_is_one_row(app, deliver):
    body = body_for(msg_id="repeat-1")
    assert deliver(body).json == {"status": "stored"}
    again = deliver(body)
    assert again.status_code == 200 and again.json == {"status": "duplicate"}
    assert count(app, Message) == 1
    with app.app_context():
        conversation = conversation_of("+37255512345")
        assert (conversation.message_count, conversation.unread_count) == (1, 1)


def test_conversation_is_kept_current(app, deliver):
    deliver(body_for(sender="+3725551", text="first", channel="sms", time="2024-06-01T08:00:00Z"))
    deliver(body_for(sender="+3725551", text="second", channel="viber", time="2024-06-01T09:00:00Z"))
    deliver(body_for(sender="+4470000", text="other"))
    with app.app_context():
        conversation = conversation_of("+3725551")
        assert conversation.message_count == 2 and conversation.unread_count == 2
        assert conversation.last_text == "second" and conversation.channel == "viber"
        assert conversation.last_sent_at == datetime(2024, 6, 1, 9)
        assert conversation.sender_key == "3725551"
        assert db.session.scalar(sa.select(sa.func.sum(DailyCount.count))) == 3


def test_channel_defaults_to_sms_and_optional_fields_may_be_absent(app, deliver):
    response = deliver(body_for(msg_id="bare", channel=None, sub_msg_id=None, recipient=None))
    assert response.status_code == 200
    message = stored(app, "bare")
    assert (message.channel, message.sub_msg_id, message.recipient) == ("sms", None, None)


@pytest.mark.parametrize(
    "text",
    [
        "😀👍🏽 emoji",
        "Tere! Jõuluvana tõi õunu, äädikat ja šokolaadi",
        "Привет, как дела?",
        "",
        "x" * 10_000,
        "مرحبا",
        "line\nbreaks\r\nand\ttabs",
        "<script>alert(1)</script>",
    ],
)
def test_text_round_trips_exactly(app, deliver, text):
    assert deliver(body_for(msg_id="u1", text=text)).status_code == 200
    assert stored(app, "u1").text == text


def test_lone_surrogates_and_nul_are_stored_readably(app, deliver):
    body = b'{"msg_id":"odd","sender":"+1","time":"2024-06-01T08:00:00Z","text":"a\\ud800b\\u0000c"}'
    assert deliver(body).status_code == 200
    message = stored(app, "odd")
    assert message.text == "a\ufffdb\ufffdc"
    assert message.raw_body == body  # the exact bytes are kept


def test_time_with_offset_is_stored_as_utc(app, deliver):
    deliver(body_for(msg_id="tz", time="2024-06-01T10:30:00+02:00"))
    assert stored(app, "tz").sent_at == datetime(2024, 6, 1, 8, 30)


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "not-hex", "é" * 64])
def test_missing_or_wrong_signature_is_401_and_logged_without_the_secret(app, deliver, caplog, signature):
    caplog.set_level(logging.WARNING)
    response = deliver(body_for(), signature=signature)
    assert response.status_code == 401
    assert response.json == {"error": "missing or invalid X-Messente-Signature"}
    assert count(app, Message) == 0 and count(app, DeadLetter) == 0
    assert "signature" in caplog.text.lower()
    assert SECRET not in caplog.text


def test_uppercase_hex_signature_is_accepted(app, client):
    body = body_for()
    headers = signed_headers(body)
    headers["X-Messente-Signature"] = headers["X-Messente-Signature"].upper()
    assert client.post("/callbacks/inbound", data=body, headers=headers).status_code == 200


def test_any_configured_secret_verifies_during_rotation(database_url):
    app = make_app(database_url, MESSENTE_SHARED_SECRET="new-secret, " + SECRET)
    with app.app_context():
        create_tables()
    client = app.test_client()
    for secret in ("new-secret", SECRET):
        body = body_for()
        assert client.post("/callbacks/inbound", data=body, headers=signed_headers(body, secret)).status_code == 200
    body = body_for()
    assert client.post("/callbacks/inbound", data=body, headers=signed_headers(body, "retired")).status_code == 401
    with app.app_context():
        db.engine.dispose()


def test_no_secret_configured_refuses_everything(database_url, caplog):
    app = make_app(database_url, MESSENTE_SHARED_SECRET="")
    with app.app_context():
        create_tables()
    body = body_for()
    response = app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body, ""))
    assert response.status_code == 503
    assert "secret" in response.json["error"]
    assert count(app, Message) == 0
    with app.app_context():
        db.engine.dispose()


def test_body_over_64_kib_is_413(app, deliver):
    body = body_for(text="x" * 70_000)
    response = deliver(body)
    assert response.status_code == 413
    assert "64 KiB" in response.json["error"]
    assert count(app, Message) == 0


def test_body_just_under_the_limit_is_stored(app, deliver):
    body = body_for(msg_id="big", text="")
    body = body_for(msg_id="big", text="y" * (64 * 1024 - len(body)))
    assert len(body) == 64 * 1024
    assert deliver(body).status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        (b"{not json", "JSON"),
        (b"\xff\xfe\x00garbage", "JSON"),
        (b"[1, 2, 3]", "object"),
        (b'"just a string"', "object"),
        (body_for(msg_id=None), "msg_id"),
        (body_for(sender=None), "sender"),
        (body_for(text=None), "text"),
        (body_for(time=None), "time"),
        (body_for(msg_id=42), "msg_id"),
        (body_for(sender=["+1"]), "sender"),
        (body_for(text={"a": 1}), "text"),
        (body_for(time=1717228800), "time"),
        (body_for(time="yesterday"), "time"),
        (body_for(time="2024-13-45T99:00:00Z"), "time"),
        (body_for(channel=7), "channel"),
        (body_for(msg_id="x" * 300), "msg_id"),
        (body_for(sender="   "), "sender"),
        # Out of range once moved to UTC: no OverflowError, no 500 that the provider retries for ever.
        (body_for(time="0001-01-01T00:00:00+14:00"), "time"),
        (body_for(time="9999-12-31T23:59:59-14:00"), "time"),
        # Checked after lowercasing, which makes "İ" two characters.
        (body_for(channel="İ" * 17), "channel"),
        (body_for(channel="x" * 33), "channel"),
    ],
)
def test_invalid_signed_body_is_400_naming_the_field_and_kept_as_dead_letter(app, deliver, body, field):
    response = deliver(body)
    assert response.status_code == 400
    assert field in response.json["error"]
    assert count(app, Message) == 0
    with app.app_context():
        [letter] = db.session.scalars(sa.select(DeadLetter)).all()
        assert letter.raw_body == body and field in letter.reason


def test_no_redirect_no_cookie_no_csrf_on_the_callback_path(app, deliver, client):
    response = deliver(body_for())
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert response.content_type == "application/json"
    body = body_for()
    slash = client.post("/callbacks/inbound/", data=body, headers=signed_headers(body))
    assert slash.status_code == 404 and "Location" not in slash.headers
    assert slash.json["error"]
    assert client.get("/callbacks/inbound").status_code == 405


def test_acknowledged_message_is_visible_to_a_new_connection(app, deliver, database_url):
    assert deliver(body_for(msg_id="durable")).status_code == 200
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM message WHERE msg_id = 'durable'")) == 1
    engine.dispose()


def test_concurrent_duplicates_from_several_processes_store_one_row(app, server_factory):
    server = server_factory(workers=4)
    bodies = [body_for(msg_id=f"dup-{n % 10}", sender=f"+3725550{n % 3}") for n in range(80)]

    def post(body):
        request = urllib.request.Request(
            server.url + "/callbacks/inbound", data=body, headers=signed_headers(body), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())["status"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(post, bodies))
    assert all(status == 200 for status, _ in results)
    assert sum(1 for _, outcome in results if outcome == "stored") == 10
    assert count(app, Message) == 10
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.sum(Conversation.message_count))) == 10


# Whatever arrives, the answer is never a 5xx and nothing unsigned is stored.
headers_strategy = st.dictionaries(
    st.sampled_from(["X-Messente-Signature", "x-messente-signature", "Content-Type", "X-Other"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80),
    max_size=3,
)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=500).map(str.encode),
        st.builds(body_for, text=st.text(max_size=200)),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=20,
        ).map(lambda value: json.dumps(value).encode()),
    ),
    headers=headers_strategy,
)
def test_fuzz_unsigned_input_is_refused_without_5xx(app, body, headers):
    response = app.test_client().post("/callbacks/inbound", data=body, headers=headers)
    assert response.status_code == 401
    assert count(app, Message) == 0 and count(app, DeadLetter) == 0


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=st.text(),
    sender=st.text(min_size=1, max_size=30).filter(str.strip),
    msg_id=st.text(min_size=1, max_size=60).filter(str.strip),
)
def test_fuzz_signed_messages_are_always_stored(app, text, sender, msg_id):
    msg_id = f"{uuid.uuid4()}{msg_id}"  # examples share one database
    body = body_for(msg_id=msg_id, sender=sender, text=text)
    response = app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body))
    assert response.status_code == 200, response.data
    message = stored(app, clean_text(msg_id))
    assert message is not None and message.text == clean_text(text)


@pytest.mark.parametrize(
    "body, status, field",
    [
        (b"[" * 30_000 + b"]" * 30_000, 400, "JSON"),  # deeper than any parser stack
        (b'{"msg_id": "x", "sender": "+1", "time": "2024-06-01T08:00:00Z", "text": "\xff\xfe"}', 400, "JSON"),
        (b'{"msg_id": "x", "sender": "+1", "time": "2024-06-01T08:00:00Z", "text": "a\x00b"}', 400, "JSON"),
        (body_for(text="\U0001f600" * 20_000), 413, "64 KiB"),
        (b"x" * 1024 * 1024, 413, "64 KiB"),
    ],
)
def test_hostile_signed_bodies_get_a_clear_4xx(app, deliver, body, status, field):
    response = deliver(body)
    assert response.status_code == status
    assert field in response.json["error"]
    assert count(app, Message) == 0


def test_duplicate_signature_headers_are_refused_as_ambiguous(app, client):
    """WSGI joins repeated headers into one value, which is no signature: 401, nothing stored."""
    body = body_for(msg_id="dup-header")
    good = signed_headers(body)["X-Messente-Signature"]
    for pair in ((good, "0" * 64), ("0" * 64, good), (good, good)):
        headers = [
            ("Content-Type", "application/json"),
            ("X-Messente-Signature", pair[0]),
            ("x-messente-SIGNATURE", pair[1]),
        ]
        assert client.post("/callbacks/inbound", data=body, headers=headers).status_code == 401
    assert count(app, Message) == 0
    headers = [("Content-Type", "application/json"), ("x-MESSENTE-signature", good)]
    assert client.post("/callbacks/inbound", data=body, headers=headers).status_code == 200


def test_a_refused_body_sent_again_and_again_is_kept_once(app, deliver):
    body = body_for(time="yesterday")
    for _ in range(20):
        assert deliver(body).status_code == 400
    deliver(body_for(time="the day before"))
    assert count(app, DeadLetter) == 2


def test_a_sender_whose_lowercase_is_longer_is_stored_and_found(app, client, deliver, auth):
    sender = "İ" * 64
    assert deliver(body_for(sender=sender)).json == {"status": "stored"}
    with app.app_context():
        assert len(conversation_of(sender).sender_key) == 64
    auth.login()
    assert sender in client.get("/?q=" + "i̇" * 3).text


def test_a_channel_at_the_limit_after_lowercasing_is_stored(app, deliver):
    assert deliver(body_for(channel="İ" * 16)).json == {"status": "stored"}
    with app.app_context():
        assert db.session.scalar(sa.select(Message.channel)) == "i̇" * 16


def test_one_bad_message_in_a_batch_does_not_fail_the_others(app):
    """The batch fails as a whole, then each message is stored alone: only the guilty one
    fails (and its request answers 503, for the provider to retry). A message without a
    time, which the database refuses, stands in for any fault of one message."""
    good = [ingest.parse_payload(body_for(sender=f"+37255500{n}")) for n in range(5)]
    bad = replace(ingest.parse_payload(body_for()), sent_at=None)
    futures = [Future() for _ in range(6)]
    committer = group_commit.Committer(app)
    with app.app_context():
        committer.commit(list(zip([*good[:3], bad, *good[3:]], futures, strict=True)))  # what a leading request runs
    assert [future.result() for future in futures[:3] + futures[4:]] == [True] * 5
    assert isinstance(futures[3].exception(), sa.exc.IntegrityError)
    assert count(app, Message) == 5


def test_a_database_that_cannot_be_opened_answers_503_and_the_next_request_tries_again(database_url, tmp_path, caplog):
    if database_url.startswith("sqlite"):
        unreachable = f"sqlite:///{tmp_path / 'no-such-directory' / 'inbox.sqlite3'}"
    else:
        unreachable = database_url.split("?")[0].rsplit("/", 1)[0] + "/no_such_database"
    client = make_app(unreachable).test_client()
    body = body_for()
    for _ in range(2):  # nothing is left behind by the failure: the second request tries anew
        response = client.post("/callbacks/inbound", data=body, headers=signed_headers(body))
        assert response.status_code == 503
        assert response.json == {"error": "storage temporarily unavailable, retry later"}
    assert "database unavailable" in caplog.text and SECRET not in caplog.text


def raw_exchange(server, head: bytes, body_parts: list[bytes]) -> int:
    """Send a request as bytes over one connection; the status code of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        try:
            connection.sendall(head)
            for part in body_parts:
                connection.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read everything
        answer = connection.makefile("rb").readline()
    return int(answer.split()[1])


def chunked(body: bytes, size: int = 8192) -> list[bytes]:
    parts = [body[start : start + size] for start in range(0, len(body), size)]
    return [b"%x\r\n%s\r\n" % (len(part), part) for part in parts] + [b"0\r\n\r\n"]


def chunked_head(body: bytes) -> bytes:
    return (
        b"POST /callbacks/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
        b"X-Messente-Signature: " + signed_headers(body)["X-Messente-Signature"].encode() + b"\r\n\r\n"
    )


def test_a_chunked_body_is_read_whole_and_over_the_limit_is_413(app, server_factory):
    server = server_factory(workers=1)
    fits = body_for(msg_id="chunked-fits", text="y" * 40_000)
    assert raw_exchange(server, chunked_head(fits), chunked(fits)) == 200
    # Signed over the whole body: were it cut at 64 KiB, the signature would be checked over a prefix.
    too_large = body_for(msg_id="chunked-too-large", text="x" * (64 * 1024 + 100))
    assert raw_exchange(server, chunked_head(too_large), chunked(too_large)) == 413
    with app.app_context():
        assert db.session.scalars(sa.select(Message.msg_id)).all() == ["chunked-fits"]


def test_concurrent_callbacks_take_turns_and_each_is_answered_once_committed(app):
    """Requests in one process take turns leading the group commit (no thread of its own): each
    of many concurrent stores returns once its message is committed, duplicates as duplicates."""
    committer = group_commit.Committer(app)
    bodies = [body_for(sender=f"+3725550{n:03d}") for n in range(40)]
    messages = [ingest.parse_payload(body) for body in bodies + bodies[:5]]  # each request parses its own
    start = threading.Barrier(len(messages))

    def store(message):
        with app.app_context():
            start.wait()
            return committer.store(message)

    with ThreadPoolExecutor(len(messages)) as pool:
        answers = list(pool.map(store, messages))
    assert sorted(answers) == [False] * 5 + [True] * 40
    assert count(app, Message) == 40 and not committer.pending and not committer.leading
