"""What stored text is keyed and compared by: cleaned (storable on both databases), folded (accents
and case aside) for text search, and senders' numbers as search keys. Ingest, replies, contacts,
search, erasure and the demo data all write and compare text through these, so they agree."""

import re
import unicodedata

from app.db.models import NUMBER_LENGTH

SEARCH_NOISE = re.compile(r"[+\s\-()]")


def clean_text(value: str) -> str:
    """Make any decoded JSON string storable: lone surrogates and NUL become U+FFFD.

    PostgreSQL text cannot hold NUL and UTF-8 cannot hold a lone surrogate; the raw body
    keeps the exact bytes either way.
    """
    value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value.replace("\x00", "\ufffd")


def search_key(text: str) -> str:
    """What sender search compares: no +, spaces, dashes or parentheses, lowercased.

    Cut to the column's length: lowercasing can lengthen a text ("İ" becomes two characters).
    """
    return SEARCH_NOISE.sub("", text).lower()[:NUMBER_LENGTH]


def fold(text: str) -> str:
    """The text as search compares it: compatibility forms unified (ﬁ, ２), accents dropped, case
    folded (ß is ss). "Tellimus" and "tellimus", "café" and "cafe" fold to the same text."""
    if text.isascii():
        return text.lower()  # what the rest gives for ASCII, much faster
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def folded_query(query: str) -> str:
    """A query as search compares it, cleaned as stored texts are (no stored text holds NUL or a
    lone surrogate, and PostgreSQL can't take them as a parameter)."""
    return fold(clean_text(query).strip())
