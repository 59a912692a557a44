"""Request framing: the server decides "is this request whole?" with llhttp, strictly, in its event
loop (app/server/framing.py's RequestFraming), and the thread's parser reads only those bytes.

The attacks of an outside security test, against the real server, and a property test that feeds
generated request bytes to the framing directly. The real server's tests are properties of the
HTTP server, not of the database: they run on the SQLite leg only.
"""

import socket
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from gunicorn.config import Config
from gunicorn.http.errors import ParseException
from gunicorn.http.parser import RequestParser
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.db.models import Message
from app.extensions import db
from app.server import framing as limits
from app.server import settings as server_settings
from app.server import worker
from app.server.framing import WAIT, WHOLE, RequestFraming
from app.server.worker import BufferedRequest, ReadPastTheRequest
from conftest import ONE_DATABASE, body_for, signed_headers, wait_until

ANSWER_SECONDS = worker.REQUEST_SECONDS + 5  # a client that waits longer has given up


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_SECONDS)


def status_line(sock: socket.socket) -> bytes:
    """The next status line the server sends on `sock` (b"" if it closed without one)."""
    line = b""
    while not line.endswith(b"\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line.strip()


def headers_and_blank_line(sock: socket.socket):
    while status_line(sock):
        pass


def status_of(server, request: bytes) -> bytes:
    with connect(server) as sock:
        sock.sendall(request)
        return status_line(sock)


def login_page_answers(server) -> bool:
    try:
        with urllib.request.urlopen(server.url + "/login", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def chunked_get(chunk_size_line: bytes) -> bytes:
    return (
        b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk_size_line
        + b"\r\nhello\r\n0\r\n\r\n"
    )


# Each of these took a worker down (-6: an endless loop) or was read as some other number (the
# last two answered 500 with a traceback).
BAD_CHUNK_SIZES = [b"-6", b"+5", b"0x5", b"1_0", b"5 "]


@ONE_DATABASE
def test_a_chunk_size_other_than_hex_digits_is_400_and_the_server_keeps_answering(app, server_factory):
    server = server_factory(workers=1, threads=2)
    for size in BAD_CHUNK_SIZES:
        with connect(server) as sock:
            sock.sendall(chunked_get(size))
            assert status_line(sock) == b"HTTP/1.1 400 Bad Request", size
            headers_and_blank_line(sock)
            assert sock.recv(1) == b"", f"{size!r}: the connection stays open after a 400"
        assert login_page_answers(server), f"/login does not answer after a chunk size of {size!r}"
    assert status_of(server, chunked_get(b"5")) == b"HTTP/1.1 200 OK"
    assert "Traceback" not in server.output()


# The slow chunk-size line: a line of zeros with no end, a byte now and then. Longer than
# LINE_LIMIT is refused at once; shorter waits in the event loop (until REQUEST_SECONDS), never
# in a thread. /login reads its form, so a thread would wait for the body.
SLOW_LINE_HEAD = (
    b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
SLOW_LINE_CONNECTIONS = 80


@ONE_DATABASE
def test_slow_chunk_size_lines_on_many_connections_leave_pages_answering(app, server_factory):
    server = server_factory(workers=2, threads=8)  # far fewer threads than attackers
    long_lines, short_lines = [], []
    try:
        for n in range(SLOW_LINE_CONNECTIONS):
            sock = connect(server)
            if n % 2:
                sock.sendall(SLOW_LINE_HEAD + b"0" * 1100)
                long_lines.append(sock)
            else:
                sock.sendall(SLOW_LINE_HEAD + b"0" * 1000)
                short_lines.append(sock)
        wait_until(
            lambda: served_connections(server.port) >= len(short_lines),
            lambda: f"{served_connections(server.port)} connections accepted",
            interval=0.02,
        )
        for sock in short_lines:
            sock.sendall(b"0")  # the byte now and then
        # A thread that waits for the rest of a line would wait SEND_STALL_SECONDS (30) per byte.
        wait_until(lambda: login_page_answers(server), "/login answers while the lines hang", timeout=ANSWER_SECONDS)
        assert {status_line(sock) for sock in long_lines} == {b"HTTP/1.1 400 Bad Request"}
    finally:
        for sock in long_lines + short_lines:
            sock.close()


def served_connections(port: int) -> int:
    """Connections to `port` that a server process has accepted (inode 0: still in the backlog)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01" and fields[9] != "0":
            count += 1
    return count


def chunked_callback(body: bytes, chunk_size: int) -> bytes:
    chunks = [body[start : start + chunk_size] for start in range(0, len(body), chunk_size)]
    return (
        b"POST /callbacks/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
        b"X-Messente-Signature: "
        + signed_headers(body)["X-Messente-Signature"].encode()
        + b"\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
        + b"0\r\n\r\n"
    )


@ONE_DATABASE
def test_a_body_of_more_chunks_than_the_cap_is_413_and_not_stored(app, server_factory):
    server = server_factory(workers=1, threads=2)
    few = body_for(msg_id="in-few-chunks", text="a" * 600)
    many = body_for(msg_id="in-one-byte-chunks", text="a" * 600)
    assert len(many) > limits.MAX_CHUNKS
    chunk_size = -(-len(few) // (limits.MAX_CHUNKS - 1))  # the last, empty chunk counts too
    assert status_of(server, chunked_callback(few, chunk_size)) == b"HTTP/1.1 200 OK"
    assert status_of(server, chunked_callback(many, 1)) == b"HTTP/1.1 413 Content Too Large"
    with app.app_context():
        assert db.session.scalars(sa.select(Message.msg_id)).all() == ["in-few-chunks"]


@ONE_DATABASE
def test_limits_continue_and_pipelining_still_work(app, server_factory):
    server = server_factory(workers=1, threads=2)
    # A body announced over the limit is refused before it is sent.
    too_large = b"POST /callbacks/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
    assert status_of(server, too_large % (limits.BODY_LIMIT + 1)) == b"HTTP/1.1 413 Content Too Large"
    # A head over the limit.
    long_head = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Filler: %s\r\n" % (b"a" * 1000) * 70 + b"\r\n"
    assert status_of(server, long_head) == b"HTTP/1.1 431 Request Header Fields Too Large"
    # A client that waits for 100 Continue gets it once, sends its body, and gets the answer.
    body = body_for(msg_id="after-continue")
    with connect(server) as sock:
        sock.sendall(
            b"POST /callbacks/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n"
            b"X-Messente-Signature: %s\r\n\r\n" % (len(body), signed_headers(body)["X-Messente-Signature"].encode())
        )
        assert status_line(sock) == b"HTTP/1.1 100 Continue"
        assert status_line(sock) == b""  # the blank line ending the 100
        sock.sendall(body)
        assert status_line(sock) == b"HTTP/1.1 200 OK"
    # Pipelined requests, a chunked one among them, on one kept-alive connection.
    pipelined = (
        b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        + chunked_get(b"5")
        + b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(pipelined)
        answers = b""
        while chunk := sock.recv(65536):
            answers += chunk
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert "Traceback" not in server.output()


@ONE_DATABASE
def test_a_stalled_request_on_a_kept_alive_connection_holds_no_thread(app, server_factory):
    server = server_factory(workers=1, threads=2)
    kept_alive = []
    try:
        for _ in range(4):  # more than the threads
            sock = connect(server)
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert status_line(sock) == b"HTTP/1.1 200 OK"
            headers_and_blank_line(sock)
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Stalled: ")  # and no more
            kept_alive.append(sock)
        wait_until(
            lambda: login_page_answers(server), "/login answers while kept-alive requests stall", timeout=ANSWER_SECONDS
        )
    finally:
        for sock in kept_alive:
            sock.close()


@ONE_DATABASE
def test_the_server_makes_no_control_socket_outside_the_project(app, server_factory, tmp_path):
    home, runtime = tmp_path / "home", tmp_path / "run"  # where gunicorn would put gunicorn.ctl
    home.mkdir(), runtime.mkdir()
    server = server_factory(workers=1, env={"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)})
    assert login_page_answers(server)
    assert [*home.rglob("*"), *runtime.rglob("*")] == []


# --- the framing decision itself, over generated bytes --------------------------------------

# Small limits, so that generated requests reach them.
SMALL_LIMITS = dict(HEAD_LIMIT=300, BODY_LIMIT=400, MAX_CHUNKS=12, LINE_LIMIT=40)
GUNICORN = Config()
GUNICORN.set("http_parser", server_settings.http_parser)

PLAIN_HEADERS = [
    b"Accept: */*",
    b"Expect: 100-continue",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Content-Type: text/plain",
    b"X-Long: " + b"a" * 120,
    b"Trailer: X-Sum",
]
header_lines = st.sampled_from(
    PLAIN_HEADERS + [b"Connection: upgrade", b"Upgrade: h2c", b"Transfer-Encoding: gzip, chunked", b"Content-Length: 3"]
)
GOOD_CHUNK_SIZES = [b"%x", b"%X", b"0%x", b"00000000%x", b"%x;name=value", b'%x;a="q s"']
# The attacks, and a chunk-size line longer than every limit together (valid, but never ending).
chunk_size_forms = st.sampled_from(
    GOOD_CHUNK_SIZES + [b"-%x", b"+%x", b"0x%x", b"%x ", b" %x", b"%x_0", b"%x\t", b"0" * 3000 + b"%x"]
)
noise = st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"0", b";", b":", b"\x00", b"\xff", b"a", b"-"])


@st.composite
def request_bytes(draw):
    """A request (well formed or not, by `draw`'s choice) and how it arrives, in pieces."""
    method = draw(st.sampled_from([b"GET", b"POST", b"POST", b"PUT", b"CONNECT", b"get"]))
    target = draw(st.sampled_from([b"/", b"/login", b"/a?b=c", b"*", b"host:443"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]))
    headers = draw(st.lists(header_lines, max_size=4))
    head = [b"%s %s %s" % (method, target, version), b"Host: 127.0.0.1", *headers]
    # Whether the bytes are one whole request, as far as framing goes; damage below makes them not.
    well_formed = all(header in PLAIN_HEADERS for header in headers)
    body = draw(st.binary(max_size=500))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    encoded = b""
    if framing == "length":
        missing = draw(st.sampled_from([0, 0, 0, -1, 1]))
        well_formed = well_formed and missing == 0
        head.append(b"Content-Length: %d" % max(0, len(body) + missing))
        encoded = body
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        position = 0
        while position < len(body):
            size = draw(st.integers(1, 200))
            chunk = body[position : position + size]
            form = draw(chunk_size_forms)
            well_formed = well_formed and form in GOOD_CHUNK_SIZES
            encoded += form.replace(b"%x", b"%x" % len(chunk)).replace(b"%X", b"%X" % len(chunk))
            encoded += b"\r\n" + chunk + b"\r\n"
            position += size
        encoded += (
            b"0\r\n"
            + b"".join(
                t + b"\r\n"
                for t in draw(
                    st.lists(st.sampled_from([b"X-Sum: 1", b"Content-Length: 5", b"X-Long: " + b"b" * 60]), max_size=2)
                )
            )
            + b"\r\n"
        )
    data = bytearray(b"\r\n".join(head) + b"\r\n\r\n" + encoded)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):  # damage
        well_formed = False
        at = draw(st.integers(0, len(data)))
        if draw(st.booleans()) and at < len(data):
            del data[at]
        else:
            data[at:at] = draw(noise)
    if draw(st.booleans()):
        data += b"GET /next HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # pipelined
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    pieces = [bytes(data[start:end]) for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return pieces, well_formed


def read_as_the_thread_does(received: bytes):
    """gunicorn's parser over exactly these bytes, as the thread reads them: the body gunicorn
    reads, or None if it refuses the request (answered 400 by the thread)."""
    parser = RequestParser(GUNICORN, [], ("127.0.0.1", 1))
    parser.unreader = BufferedRequest(None, received)
    try:
        request = next(parser)
        return request.body.read()
    except ReadPastTheRequest:
        raise AssertionError(f"gunicorn's parser wants more than the whole request {received!r}") from None
    except ParseException:
        return None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_bytes())
def test_framing_never_hands_a_thread_a_request_it_would_wait_on(generated):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SMALL_LIMITS.items():
            patch.setattr(limits, name, value)
        check_framing(*generated)


def check_framing(pieces: list[bytes], well_formed: bool):
    # A head, a body, and every chunk-size line or trailer field at its longest (with its CRLFs).
    most_bytes = limits.HEAD_LIMIT + limits.BODY_LIMIT + (limits.MAX_CHUNKS + 2) * (limits.LINE_LIMIT + 8)
    framing = RequestFraming()
    for piece in pieces:
        state = framing.feed(piece)  # returns: no endless loop
        assert state in (WAIT, WHOLE, *worker.REFUSALS)
        if state != WAIT:
            break
        assert len(framing.buffer) <= most_bytes, "more bytes held for one request than the limits allow"
    event(f"verdict: {state}")
    if state == WAIT:
        assert not well_formed, f"a whole request waits for more: {b''.join(pieces)!r}"
    elif state == WHOLE:
        body = read_as_the_thread_does(bytes(framing.buffer))
        assert body is None or len(body) <= limits.BODY_LIMIT


@pytest.mark.parametrize("size", BAD_CHUNK_SIZES)
def test_each_attack_chunk_size_is_malformed_at_once(size):
    assert RequestFraming().feed(chunked_get(size)) == "malformed"


def test_a_chunk_size_line_over_the_limit_is_malformed_before_it_ends():
    framing = RequestFraming()
    assert framing.feed(SLOW_LINE_HEAD) == WAIT
    assert framing.feed(b"0" * limits.LINE_LIMIT) == WAIT
    assert framing.feed(b"0") == "malformed"


def test_many_chunks_are_refused_however_they_arrive():
    whole = SLOW_LINE_HEAD + b"1\r\na\r\n" * limits.MAX_CHUNKS + b"0\r\n\r\n"
    assert RequestFraming().feed(whole) == "body too large"
    framing = RequestFraming()
    assert [framing.feed(whole[n : n + 1]) for n in range(len(whole))][-1] == "body too large"
