"""Whether the bytes received so far are a whole HTTP/1.1 request: llhttp's decision (`httptools`,
the parser uvicorn uses), fed each piece once as it arrives (`RequestFraming`). The event loop of
app/server/worker.py asks before it hands a request to a thread; a request found malformed, or
over a limit here, is refused there (400, 413 or 431) without having cost a thread.
"""

import httptools

HEAD_LIMIT = 64 * 1024  # a longer request line and headers are refused with 431
BODY_LIMIT = 1024 * 1024  # a larger body is refused with 413 (the callback's own limit is 64 KiB)
# A chunked body's chunks, the last (empty) one and trailer fields included: each costs the
# thread's parser about 9 us, as much as a few kilobytes of body, so more are refused with 413.
MAX_CHUNKS = 256
# A chunk-size line (with its extensions) or trailer field longer than this is refused with 400.
LINE_LIMIT = 1024

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
