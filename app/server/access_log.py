"""The access log `make run` writes (`logger_class` in app/server/settings.py): quiet about the
background polls, and without what a line must not carry (query strings, referrers, tokens).
"""

import re

from gunicorn.glogging import Logger

SET_PASSWORD_TOKEN = re.compile(r"/set-password/[^/?]+")
CONVERSATION_BY_SENDER = re.compile(r"^/conversations/(?![0-9]+(?:/|$))[^/?]+")


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
