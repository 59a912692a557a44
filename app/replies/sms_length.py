"""How long a text is as SMS: its encoding, its length in that encoding, and how many parts it takes.

A leaf module (no app imports). The same rules run in the browser; tests/vectors/sms-length.json
holds the cases both must agree on.

- GSM-7 when every character is in the GSM 03.38 basic set or its extension table; the
  extension characters (``^ { } \\ [ ] ~ | €`` and form feed) take two septets (an escape and the
  character). 160 septets fit in one SMS; a longer text is split into parts of 153.
- Otherwise UCS-2 for the whole text (one character outside GSM-7 is enough: õ, ç, ’, an emoji),
  counted in UTF-16 code units, so a character outside the Basic Multilingual Plane (most emoji)
  takes two. 70 units fit in one SMS; a longer text is split into parts of 67.
- A part never ends in the middle of a character: an escape and its extension character, or the
  two halves of a surrogate pair, stay together. When one would straddle the boundary it moves to
  the next part, so a text can take one part more than units / 153 (or 67) rounded up.
- The text is counted as typed: no normalisation (an "é" typed as e + a combining accent is two
  characters, and the accent makes it UCS-2) and no replacement. Replies are sent with
  Messente's autoconvert "off" so that this count and the bill agree.
- An empty text is 0 parts: there is nothing to send (an empty reply is never sent).
"""

from dataclasses import dataclass

# GSM 03.38 basic character set, in table order (0x00-0x7F), without 0x1B (the escape to the
# extension table, which is not a character of its own): 127 characters.
MAX_TEXT = 1600  # the longest reply: ten SMS parts and more; longer is more likely a paste gone wrong
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table's characters: each is sent as escape + character, two septets.
GSM7_EXTENSION = frozenset("^{}\\[]~|€\f")

GSM7, UCS2 = "GSM-7", "UCS-2"
SINGLE = {GSM7: 160, UCS2: 70}  # units in a text sent as one SMS
PER_PART = {GSM7: 153, UCS2: 67}  # units in each part of a longer one (the rest holds the UDH)


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # GSM-7 septets, or UTF-16 code units for UCS-2
    parts: int  # SMS messages it is sent (and billed) as; 0 for an empty text


def sms_parts(text: str) -> SmsLength:
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        encoding = GSM7
        sizes = [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding = UCS2
        sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    units = sum(sizes)
    if units == 0:
        parts = 0
    elif units <= SINGLE[encoding]:
        parts = 1
    else:
        parts, used = 1, 0
        for size in sizes:  # fill each part; a character that doesn't fit starts the next one
            if used + size > PER_PART[encoding]:
                parts, used = parts + 1, 0
            used += size
    return SmsLength(encoding, units, parts)
