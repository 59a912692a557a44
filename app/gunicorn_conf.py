"""gunicorn settings and worker for `make run` (`python -m app.server`; see docs/deploy.md).

gunicorn's own `gthread` worker gives a connection to a thread as soon as its first bytes
arrive, and the thread then blocks until the request is whole: a few dozen clients that
trickle their headers or body take every thread. `WholeRequestWorker` is `gthread` whose event
loop (one thread, non-blocking sockets) first reads the whole request, head and body, and only
then hands it to a thread. A request not whole within REQUEST_SECONDS (of the connection, or of
the first byte of a later request on a kept-alive one) is answered 408 and closed without having
cost a thread; a connection that sent nothing is just closed.
"""
import errno
import multiprocessing
import re
import selectors
import socket
import time
from functools import partial

from gunicorn.glogging import Logger
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

bind = "127.0.0.1:5000"
worker_class = "app.gunicorn_conf.WholeRequestWorker"
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
logger_class = "app.gunicorn_conf.QuietPollsLogger"

REQUEST_SECONDS = 10.0  # for the whole request: request line, headers and body
HEAD_LIMIT = 64 * 1024  # a longer request line and headers are refused with 431
BODY_LIMIT = 1024 * 1024  # a larger body is refused with 413 (the callback's own limit is 64 KiB)
# A client that stops reading its response (a large CSV export) for this long frees its thread.
SEND_STALL_SECONDS = 30.0
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n)", re.IGNORECASE)
CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue", re.IGNORECASE)
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                  b"Content-Length: 0\r\n\r\n")

# What to do with the bytes received so far: wait for more, hand them to a thread, or refuse.
WAIT, WHOLE = "wait", "whole"
REFUSALS = {"body too large": TOO_LARGE, "head too large": HEAD_TOO_LARGE}


def pre_request(worker, req):
    sock = getattr(req.unreader, "sock", None)
    if sock is not None:
        sock.settimeout(SEND_STALL_SECONDS)


def request_state(received: bytes) -> str:
    """WAIT for more bytes, the request is WHOLE (or malformed: the parser says so), or a refusal."""
    head_end = received.find(b"\r\n\r\n")
    if head_end < 0:
        return "head too large" if len(received) > HEAD_LIMIT else WAIT
    head = b"\r\n" + received[:head_end + 2]
    body = received[head_end + 4:]
    if CHUNKED.search(head):
        return chunked_state(body)
    length = CONTENT_LENGTH.search(head)
    if length is None:
        return WHOLE
    if int(length.group(1)) > BODY_LIMIT:
        return "body too large"
    return WHOLE if len(body) >= int(length.group(1)) else WAIT


def chunked_state(body: bytes) -> str:
    """Whether a chunked body has arrived up to its last chunk and trailers."""
    position = 0
    while True:
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            return WAIT if len(body) - position < 1024 else WHOLE
        try:
            size = int(body[position:line_end].split(b";", 1)[0], 16)
        except ValueError:
            return WHOLE  # malformed: let the parser answer 400
        if size == 0:
            trailers = body[line_end + 2:]
            return WHOLE if trailers.startswith(b"\r\n") or b"\r\n\r\n" in trailers else WAIT
        position = line_end + 2 + size + 2
        if position > BODY_LIMIT:
            return "body too large"
        if position > len(body):
            return WAIT


class WholeRequestWorker(ThreadWorker):
    """gthread that reads each request whole in its event loop before a thread runs it."""

    def init_process(self):
        self.reading = {}  # connection -> the monotonic time by which its request must be whole
        super().init_process()

    def enqueue_req(self, conn):
        """Every way a request reaches a thread (a new connection, a kept-alive one, pipelined
        bytes left after a response) comes through here: read it whole first."""
        if getattr(conn, "whole", False) or not self.can_buffer(conn):
            conn.whole = False
            super().enqueue_req(conn)
            return
        received = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.received = bytearray(received)
        conn.continue_sent = False
        self.reading[conn] = time.monotonic() + REQUEST_SECONDS
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))
        self.advance(conn)  # pipelined bytes may hold a whole request already

    def can_buffer(self, conn) -> bool:
        # TLS and HTTP/2 start with a handshake the threads do; neither is used behind `make run`.
        return not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(self.cfg, conn.client)

    def on_request_bytes(self, conn, _sock):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.stop_reading(conn)
            self.drop(conn)
            return
        conn.received += data
        self.advance(conn)

    def advance(self, conn):
        """Hand the request to a thread once it is whole; refuse it if it is too large."""
        state = request_state(bytes(conn.received))
        if state == WAIT:
            if not conn.continue_sent and EXPECT_CONTINUE.search(conn.received.split(b"\r\n\r\n", 1)[0]):
                conn.continue_sent = True  # the client waits for this before it sends the body
                self.send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self.stop_reading(conn)
        if state in REFUSALS:
            self.send_quietly(conn, REFUSALS[state])
            self.drop(conn)
            return
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.unreader.unread(bytes(conn.received))
        conn.received = bytearray()
        conn.whole = True
        super().enqueue_req(conn)

    def stop_reading(self, conn):
        self.reading.pop(conn, None)
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
            if now >= deadline or (not self.alive and not conn.received):
                self.stop_reading(conn)
                if conn.received:
                    self.send_quietly(conn, TIMED_OUT)
                self.drop(conn)


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
