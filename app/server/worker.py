"""gunicorn settings and worker for `make run` (`python -m app.server`; see docs/deploy.md).

gunicorn's own `gthread` worker gives a connection to a thread as soon as its first bytes
arrive, and the thread then blocks until the request is whole: a few dozen clients that
trickle their headers or body take every thread. `WholeRequestWorker` is `gthread` whose event
loop (one thread, non-blocking sockets) first reads the whole request, head and body, and only
then hands it to a thread. A request not whole within REQUEST_SECONDS (of the connection, or of
the first byte of a later request on a kept-alive one) is answered 408 and closed without having
cost a thread; a connection that sent nothing is just closed.

Whether the bytes received so far are a whole request is llhttp's decision (`httptools`, the
parser uvicorn uses), fed each piece once as it arrives: `RequestFraming`. A request it finds
malformed, or over a limit, is answered from the event loop (400, 413 or 431) and closed. The
thread then parses the same bytes with gunicorn's own parser, which reads only those bytes
(`BufferedRequest`): should the two parsers ever disagree about where the request ends, the
thread answers 400 instead of waiting on the socket.
"""

import errno
import io
import multiprocessing
import re
import selectors
import socket
import time
from functools import partial

import httptools
from gunicorn.glogging import Logger
from gunicorn.http.body import Body
from gunicorn.http.errors import InvalidHeader
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

bind = "127.0.0.1:5000"
worker_class = "app.server.worker.WholeRequestWorker"
# The threads parse requests with gunicorn's pure-Python parser whatever else is installed (its
# optional C parser may frame a request differently from what RequestFraming checked).
http_parser = "python"
# gunicorn would otherwise make a control socket for `gunicornc` in ~/.gunicorn, outside the
# project; nothing here uses it (stop and reload with signals, docs/deploy.md).
control_socket_disable = True
# One process per CPU: each process commits its callbacks in one transaction per batch (group
# commit), so fewer processes make bigger batches and fewer commits taking turns on the write
# lock. Measured on 2 CPUs, same load: 2 x 32 stored about twice the callbacks a second of 4 x 16.
workers = multiprocessing.cpu_count()
# Threads run whole requests only, so they are free for requests that wait on another service
# (sending a reply can take seconds) without slow clients taking them. 64 in all on 2 CPUs.
threads = 32
worker_connections = 1000  # open connections per worker, idle and half-sent ones included
timeout = 30
graceful_timeout = 10
keepalive = 5
# Request headers (and so signatures) are not in the default access log format.
accesslog = "-"
logger_class = "app.server.worker.QuietPollsLogger"

REQUEST_SECONDS = 10.0  # for the whole request: request line, headers and body
HEAD_LIMIT = 64 * 1024  # a longer request line and headers are refused with 431
BODY_LIMIT = 1024 * 1024  # a larger body is refused with 413 (the callback's own limit is 64 KiB)
# A chunked body's chunks, the last (empty) one and trailer fields included: each costs the
# thread's parser about 9 us, as much as a few kilobytes of body, so more are refused with 413.
MAX_CHUNKS = 256
# A chunk-size line (with its extensions) or trailer field longer than this is refused with 400.
LINE_LIMIT = 1024
# After a refusal, how long the event loop reads and discards what the client still sends, so
# that closing does not reset the connection before the client has read the answer.
LINGER_SECONDS = 2.0
# A client that stops reading its response (a large CSV export) for this long frees its thread.
SEND_STALL_SECONDS = 30.0
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
REFUSALS = {
    "malformed": b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "body too large": b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "head too large": (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    ),
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# What to do with the bytes received so far: wait for more, hand them to a thread, or refuse.
WAIT, WHOLE = "wait", "whole"


class _Refused(Exception):
    """Raised in an llhttp callback to stop it at a limit; the reason is in RequestFraming.state."""


class _Complete(Exception):
    """Raised when llhttp has read the whole request: what follows is the next one, unparsed."""


class RequestFraming:
    """One request's bytes as they arrive, and llhttp's verdict on them: WAIT, WHOLE, or a refusal
    ("malformed", "body too large", "head too large"). Each byte is parsed once."""

    def __init__(self):
        self.buffer = bytearray()  # every byte received, handed whole to the thread
        self.parsed = 0  # how many of them llhttp has parsed
        self.state = WAIT
        self.head_done = False
        self.content_length = 0
        self.chunked = False
        self.expects_continue = False
        self.body_bytes = 0
        self.chunk_lines = 0  # chunk-size lines and trailer fields
        self.in_body_data = False  # llhttp is amid body bytes (not a chunk-size line or trailer)
        self.error = ""  # what llhttp found malformed
        self._parser = httptools.HttpRequestParser(self)

    def feed(self, data: bytes) -> str:
        """Parse `data`, the next bytes received; the verdict on everything received so far."""
        if self.state != WAIT:
            return self.state
        self.buffer += data
        rest = memoryview(data)
        while rest and self.state == WAIT:
            size = self.next_piece_size()
            piece, rest = rest[:size], rest[size:]
            self._parse(piece)
            self.parsed += len(piece)
            if self.state != WAIT:
                break
            if not self.head_done and self.parsed >= HEAD_LIMIT:
                self.state = "head too large"
            elif self.head_done and self.chunked and not self.in_body_data and self.line_so_far() > LINE_LIMIT:
                self.state, self.error = "malformed", "a chunk-size line or trailer field too long"
        return self.state

    def next_piece_size(self) -> int:
        """How much llhttp may parse before the limits are checked again. llhttp says when the
        head or a line has ended, not where, so the pieces are cut small enough to tell: a
        chunk-size line or trailer field that ends within a piece is at most a piece long, and
        one that goes on past it is measured there."""
        if not self.head_done:
            return min(LINE_LIMIT, HEAD_LIMIT - self.parsed)  # the head ends within HEAD_LIMIT
        if self.chunked:
            return max(1, LINE_LIMIT + 1 - (0 if self.in_body_data else self.line_so_far()))
        return HEAD_LIMIT + BODY_LIMIT  # a body of known length: llhttp counts it down

    def _parse(self, data):
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # Our callbacks stop llhttp by raising, which it reports as an error too.
            if self.state == WAIT:
                self.state, self.error = "malformed", str(exc)
            elif self.state == WHOLE and self._parser.should_upgrade() and (self.content_length or self.chunked):
                # llhttp skips the body of a request asking to switch protocols (WebSocket,
                # h2c, CONNECT), gunicorn does not: they would disagree on where it ends.
                self.state, self.error = "malformed", "a body on a request to switch protocols"

    def line_so_far(self) -> int:
        """How much of a chunk-size line or trailer field llhttp has parsed: the bytes after the
        last line feed, since neither may contain one."""
        return self.parsed - (self.buffer.rfind(b"\n", 0, self.parsed) + 1)

    # llhttp's callbacks, in the order it makes them.

    def on_header(self, name: bytes, value: bytes):
        if self.head_done:
            self.count_chunk_line()  # a trailer field
            return
        name = name.lower()
        if name == b"content-length":
            self.content_length = int(value)  # llhttp has checked: digits only, once
        elif name == b"transfer-encoding":
            self.chunked = True  # llhttp refuses any other coding than chunked last
        elif name == b"expect":
            self.expects_continue = value.strip().lower() == b"100-continue"

    def on_headers_complete(self):
        self.head_done = True
        # RFC 9110 10.1.1: an HTTP/1.0 client does not wait for 100 Continue.
        self.expects_continue = self.expects_continue and self._parser.get_http_version() != "1.0"
        if self.content_length > BODY_LIMIT:
            self.refuse("body too large")

    def on_chunk_header(self):
        self.in_body_data = False
        self.count_chunk_line()

    def on_body(self, data: bytes):
        self.in_body_data = True
        self.body_bytes += len(data)
        if self.body_bytes > BODY_LIMIT:
            self.refuse("body too large")

    def on_chunk_complete(self):
        self.in_body_data = False

    def on_message_complete(self):
        self.state = WHOLE
        raise _Complete()  # stop here: pipelined bytes are the next request's

    def count_chunk_line(self):
        self.chunk_lines += 1
        if self.chunk_lines > MAX_CHUNKS:
            self.refuse("body too large")

    def refuse(self, reason: str):
        self.state = reason
        raise _Refused()


class ReadPastTheRequest(InvalidHeader):
    """gunicorn's parser wanted more bytes than RequestFraming found in the request: the two
    disagree on where it ends. An InvalidHeader, so gunicorn answers 400 and closes."""

    def __init__(self):
        super().__init__("the request ends before its framing says it does")


class BufferedRequest(SocketUnreader):
    """What the thread's parser reads: the bytes the event loop received, never the socket.

    Handed out a socket read's worth at a time, as from the socket (gunicorn's chunked-body
    reader copies what is left of each read once per chunk)."""

    def __init__(self, sock, received: bytes):
        super().__init__(sock)  # the socket stays for sending the response
        self.received = received
        self.position = 0

    def chunk(self, size_hint=None):
        if self.position >= len(self.received):
            raise ReadPastTheRequest()
        size = self.mxchunk
        if size_hint and size_hint > size:
            size = min(size_hint, self.max_body_chunk)
        piece = self.received[self.position : self.position + size]
        self.position += len(piece)
        return piece

    def settle(self):
        """Put what the request left unread (a pipelined request) where gunicorn looks for it."""
        self.buf.seek(0, io.SEEK_END)
        self.buf.write(self.received[self.position :])
        self.received, self.position = b"", 0


def pre_request(worker, req):
    sock = getattr(req.unreader, "sock", None)
    if sock is not None:
        sock.settimeout(SEND_STALL_SECONDS)


class WholeRequestWorker(ThreadWorker):
    """gthread that reads each request whole in its event loop before a thread runs it."""

    def init_process(self):
        self.reading = {}  # connection -> the monotonic time by which its request must be whole
        self.lingering = {}  # refused connection -> when to stop reading what it still sends
        super().init_process()

    def enqueue_req(self, conn):
        """Every way a request reaches a thread (a new connection, a kept-alive one, pipelined
        bytes left after a response) comes through here: read it whole first."""
        if not self.can_buffer(conn):
            super().enqueue_req(conn)
            return
        received = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.framing = RequestFraming()
        conn.continue_sent = False
        self.reading[conn] = time.monotonic() + REQUEST_SECONDS
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))
        self.advance(conn, received)  # pipelined bytes may hold a whole request already

    def can_buffer(self, conn) -> bool:
        # TLS and HTTP/2 start with a handshake the threads do; neither is used behind `make run`.
        return not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(self.cfg, conn.client)

    def on_request_bytes(self, conn, _sock):
        data = self.receive(conn)
        if data is None:
            return
        if not data:
            self.stop_reading(conn)
            self.drop(conn)
            return
        self.advance(conn, data)

    def advance(self, conn, data: bytes):
        """Hand the request to a thread once it is whole; refuse it if it is malformed or too large."""
        framing = conn.framing
        state = framing.feed(data)
        if state == WAIT:
            if framing.head_done and framing.expects_continue and not conn.continue_sent:
                conn.continue_sent = True  # the client waits for this before it sends the body
                self.send_quietly(conn, CONTINUE)
            return
        self.stop_reading(conn)
        if state != WHOLE:
            self.log.debug("Refused a request from %s (%s): %s", conn.client, state, framing.error)
            self.refuse(conn, REFUSALS[state])
            return
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.unreader = BufferedRequest(conn.sock, bytes(framing.buffer))
        conn.framing = None
        super().enqueue_req(conn)  # gthread's: to a thread

    def handle(self, conn):
        """Runs in a thread."""
        keep_alive = super().handle(conn)
        unreader = getattr(conn.parser, "unreader", None)
        if isinstance(unreader, BufferedRequest):
            unreader.settle()
        return keep_alive

    def handle_request(self, req, conn):
        """Runs in a thread, once gunicorn's parser has read the request's head."""
        if isinstance(req.unreader, BufferedRequest):
            # The body is in memory already. Read here, a body gunicorn's parser refuses (a
            # trailer field it forbids, say) is its 400, not an exception inside the app.
            req.body = Body(io.BytesIO(req.body.read()))
            # The event loop sent 100 Continue if the client waited for it; not a second one.
            req._expected_100_continue = False
        return super().handle_request(req, conn)

    def refuse(self, conn, answer: bytes):
        """Answer from the event loop, then close. Until the client stops sending (at most
        LINGER_SECONDS), what it sends is read and dropped: closing a socket with unread bytes
        resets the connection, and the client could lose the answer."""
        self.send_quietly(conn, answer)
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.drop(conn)
            return
        self.lingering[conn] = time.monotonic() + LINGER_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_lingering_bytes, conn))

    def on_lingering_bytes(self, conn, _sock):
        if self.receive(conn) == b"":
            self.stop_lingering(conn)

    @staticmethod
    def receive(conn) -> bytes | None:
        """What the client sent (b"" once it has closed), or None if nothing is there after all."""
        try:
            return conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def stop_reading(self, conn):
        self.reading.pop(conn, None)
        self.unregister(conn)

    def stop_lingering(self, conn):
        self.lingering.pop(conn, None)
        self.unregister(conn)
        self.drop(conn)

    def unregister(self, conn):
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def drop(self, conn):
        self.nr_conns -= 1
        conn.close()

    @staticmethod
    def send_quietly(conn, data: bytes):
        try:
            conn.sock.send(data, socket.MSG_DONTWAIT)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EPIPE, errno.ECONNRESET):
                raise

    def murder_pending(self):
        """Close requests that did not arrive whole in time (and, when stopping, silent ones)."""
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self.reading.items()):
            if now >= deadline or (not self.alive and not conn.framing.buffer):
                self.stop_reading(conn)
                if conn.framing.buffer:
                    self.refuse(conn, TIMED_OUT)
                else:
                    self.drop(conn)
        for conn, deadline in list(self.lingering.items()):
            if now >= deadline:
                self.stop_lingering(conn)


class QuietPollsLogger(Logger):
    """gunicorn's logger without access lines for the background polls (`?since=`): every open
    page asks every few seconds, which would bury every other line of the access log.

    Lines carry paths without their query strings, and no referrer: a search or an export
    filter may be a customer's number or words from a message. A set-password link's token
    (a credential) is cut from its path, and so is the number in an old link to a conversation
    by its sender (`/conversations/+372...`, redirected to its id).
    """

    def access(self, resp, req, environ, request_time):
        if "since=" not in environ.get("QUERY_STRING", ""):
            super().access(resp, req, environ, request_time)

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        path = SET_PASSWORD_TOKEN.sub("/set-password/…", CONVERSATION_BY_SENDER.sub("/conversations/…", atoms["U"]))
        atoms.update(U=path, q="", f="-", r=f"{atoms['m']} {path} {atoms['H']}")
        return atoms


SET_PASSWORD_TOKEN = re.compile(r"/set-password/[^/?]+")
CONVERSATION_BY_SENDER = re.compile(r"^/conversations/(?![0-9]+(?:/|$))[^/?]+")
