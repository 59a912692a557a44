"""The account's currency, and prices as people read them.

Messente's delivery reports price each message (`price_info`) without naming a currency: it is
the account's, which the admin names here (the `setting` table wins over CURRENCY; "EUR" without
either). Changing it relabels every price shown; no amount is converted.
"""

from decimal import ROUND_HALF_UP, Decimal

from flask import current_app

from app import audit
from app.db import settings
from app.db.unit_of_work import write_transaction

CURRENCY = "currency"
DEFAULT = "EUR"
# ISO 4217's currencies in use (funds and the units of account included; precious metals, test
# and "no currency" codes left out: no message is priced in gold).
CODES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
    BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
    EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
    MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
    RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
    TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    ZWL
    """.split()
)
# Written before the amount; every other currency after it, by its code ("0.20 SEK").
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
SIX_PLACES = Decimal("0.000001")


def is_currency(code: str) -> bool:
    return code in CODES


def currency() -> str:
    stored = settings.stored(CURRENCY)
    if stored and is_currency(stored):
        return stored
    configured = (current_app.config.get("CURRENCY") or "").upper()
    return configured if is_currency(configured) else DEFAULT


def set_currency(code: str) -> str:
    """An admin's choice (any case), audited; the code saved. ValueError for one ISO 4217 lacks."""
    code = code.strip().upper()
    if not is_currency(code):
        raise ValueError(f"{code or 'An empty code'!r} is not a currency code of ISO 4217 (for example EUR, USD, SEK).")
    with write_transaction():
        previous = currency()
        settings.save(CURRENCY, code)
        audit.record("settings_changed", {"currency": code, "was": previous})
    return code


def amount_text(amount: Decimal) -> str:
    """An amount with at least 2 decimals and at most 4, as a price list shows it: 0.20, 0.0456."""
    rounded = amount.quantize(Decimal("0.0001"), ROUND_HALF_UP)
    text = f"{rounded:.4f}"
    return text[:-2] + text[-2:].rstrip("0") if text.endswith("0") else text


def money(amount: Decimal, code: str) -> str:
    """€0.20, $1.50, £0.0456, 0.20 SEK."""
    symbol = SYMBOLS.get(code)
    return f"{symbol}{amount_text(amount)}" if symbol else f"{amount_text(amount)} {code}"


def price_text(amount: Decimal) -> str:
    """A stored price, exact, for machines (the API, webhooks, exports): 0.2, 0.0456, 1. The
    export writes the same text in SQL (app/export)."""
    return f"{amount.quantize(SIX_PLACES):.6f}".rstrip("0").rstrip(".")
