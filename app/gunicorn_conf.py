"""gunicorn settings for `make run` (override any of them with GUNICORN_CMD_ARGS)."""
import multiprocessing

bind = "127.0.0.1:5000"
# Threads keep a slow or stalled client from holding a whole worker; processes use both cores.
worker_class = "gthread"
workers = 2 * multiprocessing.cpu_count()
threads = 8
timeout = 30
graceful_timeout = 10
keepalive = 5
# Request headers (and so signatures) are not in the default access log format.
accesslog = "-"

# A client that stalls while sending its request gets this many seconds, then its thread is
# freed for others (gthread would otherwise wait for it for ever). Behind a proxy that
# buffers request bodies (nginx does by default) this never triggers.
CLIENT_STALL_SECONDS = 10


def pre_request(worker, req):
    sock = getattr(req.unreader, "sock", None)
    if sock is not None:
        sock.settimeout(CLIENT_STALL_SECONDS)
