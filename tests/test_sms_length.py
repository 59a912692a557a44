"""app/replies/sms_length.py against tests/vectors/sms-length.json (shared with static/js/sms-length.js)."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.replies.sms_length import GSM7_BASIC, GSM7_EXTENSION, PER_PART, SINGLE, SmsLength, sms_parts
from conftest import VECTORS

CASES = json.loads((VECTORS / "sms-length.json").read_text(encoding="utf-8"))["cases"]
# Short texts of anything, and long ones (several parts) mixing one- and two-unit characters.
TEXTS = st.one_of(
    st.text(),
    st.text(st.sampled_from("a€[ж👋\r\nõ"), min_size=60, max_size=500),
    st.text(st.sampled_from("ab€^"), min_size=150, max_size=500),
)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_every_vector(case):
    assert sms_parts(case["text"]) == SmsLength(case["encoding"], case["units"], case["parts"])


def test_the_vectors_cover_the_boundaries_on_both_encodings():
    assert len(CASES) == 40  # the file's count: a vector lost or added is noticed here
    assert len({case["name"] for case in CASES}) == len(CASES)
    seen = {(case["encoding"], case["units"], case["parts"]) for case in CASES}
    for boundary in [
        ("GSM-7", 160, 1),
        ("GSM-7", 161, 2),
        ("GSM-7", 306, 2),
        ("GSM-7", 307, 3),
        ("UCS-2", 70, 1),
        ("UCS-2", 71, 2),
        ("UCS-2", 134, 2),
        ("UCS-2", 135, 3),
    ]:
        assert boundary in seen
    texts = "".join(case["text"] for case in CASES)
    for needed in ("õ", "€", "\r\n", "\f", "👋", "Привет"):
        assert needed in texts


def test_the_gsm_tables_are_exactly_03_38():
    assert len(GSM7_BASIC) == 127  # 128 positions, one of them the escape
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert "\x1b" not in GSM7_BASIC
    for char in GSM7_BASIC:
        assert sms_parts(char) == SmsLength("GSM-7", 1, 1)
    for char in GSM7_EXTENSION:
        assert sms_parts(char) == SmsLength("GSM-7", 2, 1)


@given(TEXTS)
def test_units_are_septets_or_utf16_code_units(text):
    length = sms_parts(text)
    if length.encoding == "GSM-7":
        assert length.units == len(text) + sum(char in GSM7_EXTENSION for char in text)
    else:
        assert length.units == len(text.encode("utf-16-le", "surrogatepass")) // 2


@given(TEXTS)
def test_parts_are_at_least_units_over_the_part_size_and_at_most_one_more_per_split(text):
    length = sms_parts(text)
    if length.units == 0:
        assert length.parts == 0
    elif length.units <= SINGLE[length.encoding]:
        assert length.parts == 1
    else:
        fewest = math.ceil(length.units / PER_PART[length.encoding])
        # Each part loses at most one unit to a character moved on whole.
        assert fewest <= length.parts <= math.ceil(length.units / (PER_PART[length.encoding] - 1))


@given(TEXTS, st.characters())
def test_typing_one_more_character_never_takes_fewer_parts(text, char):
    assert sms_parts(text + char).parts >= sms_parts(text).parts
