"""Phone numbers: one key per number (E.164), shown the way people read them.

`+44 7700 900123`, `+447700900123` and `447700900123` are one person: senders that parse as a
*possible* number (the right length for their country code) are stored as E.164. Possible,
not valid: whether a number is valid depends on the numbering plans in the library's data,
which change with every release, and a key must not. Sender names (`MyShop`) and short codes
(`1234`) stay as they came.
"""

import re
from collections.abc import Callable
from functools import lru_cache

import phonenumbers

# What people and providers put between digits.
SEPARATORS = re.compile(r"[\s\-().]")
# An international number written with `+`, `00` or neither (Messente sends some without `+`).
INTERNATIONAL = re.compile(r"(\+|00)?([0-9]{7,17})")
# A number as people write it to dial it: `0044 7700 900123`, `+44 (0)7700 900123`, `07700 900123`.
DIALLED = re.compile(r"\s*\+?[0-9\s\-().]*[0-9][0-9\s\-().]*")


@lru_cache(maxsize=100_000)
def normalise(sender: str) -> str:
    """The one key of a sender everywhere: its conversation, an opt-out, a suppression after
    erasure (hashed). E.164 (`+447700900123`) for a sender that is a possible phone number; else
    the sender exactly as it came."""
    match = INTERNATIONAL.fullmatch(SEPARATORS.sub("", sender))
    if match is None:
        return sender
    try:
        number = phonenumbers.parse("+" + match.group(2), None)
    except phonenumbers.NumberParseException:
        return sender
    if not phonenumbers.is_possible_number(number):
        return sender
    key = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # A national part of only zeros can format to a key that formats differently again
    # (310000000 -> +31000000 -> +3100000): such a sender keeps its own form, as a key must not change.
    if phonenumbers.format_number(phonenumbers.parse(key, None), phonenumbers.PhoneNumberFormat.E164) != key:
        return sender
    return key


def is_number_key(key: str) -> bool:
    """Whether a key is a phone number in E.164 (`+` and digits), not a sender name or short code."""
    return key.startswith("+") and key[1:].isdigit()


@lru_cache(maxsize=10_000)
def _parsed(key: str) -> phonenumbers.PhoneNumber | None:
    # Only what normalise makes a number is one (`+82000` is too short: a sender kept as it came,
    # shown as it came, so that what people copy from the page finds the same key).
    if not key.startswith("+") or INTERNATIONAL.fullmatch(key) is None:
        return None
    try:
        number = phonenumbers.parse(key, None)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


@lru_cache(maxsize=10_000)  # a list page formats fifty, a thread a hundred more: the same few again
def readable(key: str) -> str:
    """`+372 5566 4418` for `+37255664418`; a sender name or short code unchanged."""
    number = _parsed(key)
    if number is None:
        return key
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# The most digits a phone number has (E.164); fewer than seven make a short code.
MOST_DIGITS, FEWEST_DIGITS = 15, 7


def sender_kind(sender: str) -> str:
    """What a sender that is no phone number is, in words: `a sender name` (`MyShop`), `a short
    code` (`1234`), or a number with more digits than a phone number has."""
    digits = SEPARATORS.sub("", sender).removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        return "a sender name"
    if len(digits) < FEWEST_DIGITS:
        return "a short code"
    if len(digits) > MOST_DIGITS:
        return f"a number of {len(digits)} digits, more than a phone number has ({MOST_DIGITS})"
    return "a number that is not a possible phone number"


@lru_cache(maxsize=10_000)
def region(key: str) -> str | None:
    """The number's country as an ISO 3166 code (`EE`), or None for names, short codes and
    numbers whose country code is shared by no one region (`+800`)."""
    number = _parsed(key)
    if number is None:
        return None
    code = phonenumbers.region_code_for_number(number)
    if code in (None, "ZZ", "001"):  # a number no plan knows keeps its country code's main region
        assert number.country_code is not None  # parsing a number written with + sets it
        code = phonenumbers.region_code_for_country_code(number.country_code)
    return None if code in (None, "ZZ", "001") else code


def flag(region_code: str | None) -> str:
    """The flag emoji of a two-letter region code (`EE` gives 🇪🇪): regional indicator letters."""
    if not region_code or len(region_code) != 2 or not region_code.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(letter) - ord("A")) for letter in region_code.upper())


# Separators between digits in a raw body, removed before looking for a number in it.
BETWEEN_DIGITS = re.compile(rb"(?<=[0-9+])[\s\-().]+(?=[0-9])")


def mentions(key: str) -> Callable[[bytes], bool]:
    """A test of whether raw bytes (a dead letter's body) mention this number, however written:
    `+44 7700 900123`, `447700900123`, `0044...`, `07700 900123`. A sender name must appear as is."""
    number = _parsed(key)
    if number is None:
        needle = key.encode()
        return lambda raw: needle in raw
    national = phonenumbers.national_significant_number(number)
    assert number.country_code is not None  # parsing a number written with + sets it
    pattern = re.compile(rb"(?<![0-9])(?:\+|00)?(?:%d)?0?%s(?![0-9])" % (number.country_code, national.encode()))
    return lambda raw: pattern.search(BETWEEN_DIGITS.sub(b"", raw)) is not None
