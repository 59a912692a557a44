"""The worker `make run` serves with (`worker_class` in app/server/settings.py; see docs/deploy.md).

gunicorn's own `gthread` worker gives a connection to a thread as soon as its first bytes
arrive, and the thread then blocks until the request is whole: a few dozen clients that
trickle their headers or body take every thread. `WholeRequestWorker` is `gthread` whose event
loop (one thread, non-blocking sockets) first reads the whole request, head and body, and only
then hands it to a thread. A request not whole within REQUEST_SECONDS (of the connection, or of
the first byte of a later request on a kept-alive one) is answered 408 and closed without having
cost a thread; a connection that sent nothing is just closed.

Whether the bytes received so far are a whole request is llhttp's decision (app/server/framing.py).
A request it finds malformed, or over a limit, is answered from the event loop (400, 413 or 431)
and closed. The thread then parses the same bytes with gunicorn's own parser, which reads only
those bytes (`BufferedRequest`): should the two parsers ever disagree about where the request
ends, the thread answers 400 instead of waiting on the socket.
"""

import errno
import io
import selectors
import socket
import time
from functools import partial

from gunicorn.http.body import Body
from gunicorn.http.errors import InvalidHeader
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

from app.server.framing import WAIT, WHOLE, RequestFraming

REQUEST_SECONDS = 10.0  # for the whole request: request line, headers and body
# After a refusal, how long the event loop reads and discards what the client still sends, so
# that closing does not reset the connection before the client has read the answer.
LINGER_SECONDS = 2.0
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
# RequestFraming's refusals, answered from the event loop.
REFUSALS = {
    "malformed": b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "body too large": b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "head too large": (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    ),
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


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
