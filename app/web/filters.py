"""Template filters every page uses: times, phone numbers and links in message texts."""

import re

from flask import Flask
from markupsafe import Markup, escape

from app import clock
from app.db import numbers

# http(s) addresses in message texts; what may end a sentence after one is not part of it.
WEB_ADDRESS = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
TRAILING = ".,;:!?'\")]}"


def init_app(app: Flask) -> None:
    app.add_template_filter(clock.utc_iso, "utc_iso")
    app.add_template_filter(numbers.readable, "phone")
    app.add_template_filter(numbers.region, "region")
    app.add_template_filter(numbers.flag, "flag")
    app.add_template_filter(linkify)
    app.add_template_filter(initials)
    app.add_template_global(flag_of, "sender_flag")
    app.add_template_global(who, "who_is")


def flag_of(sender: str) -> Markup:
    """A number's flag for the eye (its +372 says the country to a screen reader), and a space;
    nothing for names and short codes. In Python rather than a macro: fifty rows a page call it."""
    region = numbers.region(sender)
    if not region:
        return Markup("")
    return Markup('<span class="flag" title="{0}" aria-hidden="true">{1}</span> ').format(region, numbers.flag(region))


def who(conversation) -> Markup:
    """Who a conversation (or a search hit) is with: the contact's name, else the number as people
    read it, after its flag (templates/inbox/_who.html)."""
    sender = conversation.sender
    return Markup("{0}<bdi>{1}</bdi>").format(
        flag_of(sender), getattr(conversation, "contact_name", None) or numbers.readable(sender)
    )


def initials(name: str | None) -> str:
    """Up to two letters for a person's name in a small circle: `mari.tamm` is MT, `alice` A."""
    words = [word for word in re.split(r"[\W_]+", name or "") if word]
    return "".join(word[0] for word in words[:2]).upper() or (name or "?")[:1].upper()


def linkify(text: str | None) -> Markup:
    """A message's text, escaped, with its http and https addresses as links (nothing else is)."""
    text, parts, last = text or "", [], 0
    for match in WEB_ADDRESS.finditer(text):
        address = match.group(0)
        while (
            address
            and address[-1] in TRAILING
            and not (address[-1] == ")" and address.count("(") >= address.count(")"))
        ):
            address = address[:-1]
        if len(address) <= len(match.group(0).split("://", 1)[0]) + 3:
            continue
        parts += [
            escape(text[last : match.start()]),
            Markup('<a href="{0}" rel="noopener noreferrer nofollow" target="_blank">{0}</a>').format(address),
        ]
        last = match.start() + len(address)
    parts.append(escape(text[last:]))
    return Markup("").join(parts)
