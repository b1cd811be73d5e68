"""Pure: what a customer typed → an order reference, an intent, and the fixed reply texts.

Customers type order numbers in their own script (Devanagari "१०२३", Arabic-Indic "١٠٢٣",
full-width "１０２３"), so text is normalised to ASCII digits before anything is matched. STOP and
START are honoured only when they are the whole message: "don't stop my order" is not an opt-out.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

TEXT_MESSAGE_TYPES = frozenset({"text", "button", "interactive"})

_GUID = re.compile(
    r"(?<![0-9a-z])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z])"
)
# A "+" followed by 10+ digits (spaces, dots, dashes and brackets allowed between) is a phone.
_PHONE = re.compile(r"\+[\s().-]*(?:\d[\s().-]*){9,}\d")
_KEYWORD = (
    r"(?:#|\b(?:order|orders|no|nr|num|number|ref|reference|pedido|encomenda|bestellung"
    r"|bestellnummer|commande|ordine|ऑर्डर|आर्डर|طلب)\b)"
)
# Numbers are found first, then the few characters before each are checked: scanning for
# keyword chains instead goes quadratic on input like "####…" or "no.no.no.…".
_NUMBER_RUN = re.compile(r"(?<!\d)(?<!\d[.,])(\d{3,12})(?![.,:/]?\d)")
_KEYWORD_BEFORE = re.compile(rf"{_KEYWORD}[\s.:-]*\Z")
_LETTER_BEFORE = re.compile(r"[a-z_/:]\Z")
_LETTER_AFTER = re.compile(r"[a-z_]")
_CURRENCY_BEFORE = re.compile(r"(?:(?<![a-z])(?:rs|inr|usd|eur|gbp|brl)\.?|r?\$|€|£|₹)\s*\Z")
_LOOKBACK_CHARS = 40
_STANDALONE_MAX_DIGITS = 9
# Emoji presentation selectors and joiners trail emoji ("stop ❤️") but are not punctuation.
_EMOJI_GLUE = frozenset("\ufe0e\ufe0f\u200d\u20e3")

_STOP_WORDS = (
    "stop",
    "stopp",
    "unsubscribe",
    "opt out",
    "opt-out",
    "optout",
    "stop promotions",
    "रोकें",
    "रोको",
    "बंद करो",
    "बंद करें",
    "parar",
    "pare",
    "cancelar suscripción",
    "cancelar suscripcion",
    "darse de baja",
    "baja",
    "sair",
    "cancelar inscrição",
    "cancelar inscricao",
    "abmelden",
    "arrêt",
    "arret",
    "arrêter",
    "arreter",
    "désabonner",
    "desabonner",
    "se désabonner",
    "se desabonner",
    "إيقاف",
    "إلغاء الاشتراك",
)
_START_WORDS = (
    "start",
    "subscribe",
    "unstop",
    "resume",
    "शुरू करें",
    "suscribir",
    "anmelden",
    "abonner",
)

HELP_TEXT = (
    "Hi! To check an order, send your order number (for example 1023) or the order ID from your "
    "confirmation email. Please message us from the phone number you used at checkout. "
    "Reply STOP to stop order updates on WhatsApp, or START to turn them back on."
)
NOT_FOUND_OR_NOT_YOURS = (
    "We couldn't find an order with that reference for this WhatsApp number. Please check the "
    "number, or reply from the phone number used at checkout."
)
LOOKUP_UNAVAILABLE = "Sorry, we can't look up orders right now. Please try again in a few minutes."
NON_TEXT_REPLY = (
    "Sorry, we can only read text messages here. Please send your order number as text, "
    "for example 1023."
)
OPTED_OUT_CONFIRMATION = (
    "You will no longer receive order updates from us on WhatsApp. Reply START at any time to "
    "turn them back on."
)
OPTED_IN_CONFIRMATION = (
    "You will receive order updates from us on WhatsApp again. Reply STOP at any time to opt out."
)
TOO_MANY_LOOKUPS = (
    "You've sent a lot of order lookups in a short time. Please wait a little while and try again."
)


class Intent(enum.StrEnum):
    """What an inbound message asks for."""

    LOOKUP = "lookup"
    STOP = "stop"
    START = "start"
    HELP = "help"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class OrderReference:
    """A Wix order id (GUID, lower case) or an order number (ASCII digits)."""

    kind: Literal["id", "number"]
    value: str


def normalise_text(text: str) -> str:
    """NFKC, every decimal digit of any script as ASCII, lower case: the text matching works on."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(_ascii_digit(char) for char in folded).lower()


def _ascii_digit(char: str) -> str:
    if char.isascii() or not char.isdecimal():
        return char
    return str(unicodedata.decimal(char))


def find_order_reference(text: str) -> OrderReference | None:
    """The order a message refers to: a GUID anywhere, else a keyword-led or standalone number."""
    normalised = normalise_text(text)
    guid = _GUID.search(normalised)
    if guid:
        return OrderReference("id", guid.group())
    without_phones = _PHONE.sub(lambda match: " " * len(match.group()), normalised)
    runs = list(_NUMBER_RUN.finditer(without_phones))
    chosen = next((run for run in runs if _preceded_by(_KEYWORD_BEFORE, run)), None) or next(
        (run for run in runs if _is_standalone(run)), None
    )
    return OrderReference("number", chosen.group(1)) if chosen else None


def _preceded_by(pattern: re.Pattern[str], run: re.Match[str]) -> bool:
    start = run.start()
    return pattern.search(run.string, max(0, start - _LOOKBACK_CHARS), start) is not None


def _is_standalone(run: re.Match[str]) -> bool:
    """A bare 3–9 digit number, not glued to letters and not a price."""
    return (
        len(run.group(1)) <= _STANDALONE_MAX_DIGITS
        and not _preceded_by(_LETTER_BEFORE, run)
        and not _LETTER_AFTER.match(run.string, run.end())
        and not _preceded_by(_CURRENCY_BEFORE, run)
    )


def command_of(text: str) -> str:
    """The whole message as a command: case-folded, spaces collapsed, edge punctuation gone."""
    command = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(command)
    while start < end and _is_edge_char(command[start]):
        start += 1
    while end > start and _is_edge_char(command[end - 1]):
        end -= 1
    return command[start:end]


def _is_edge_char(char: str) -> bool:
    """Punctuation, symbols (emoji), spaces and controls; never a letter or its vowel sign."""
    return char in _EMOJI_GLUE or unicodedata.category(char)[0] in "PSZC"


# Written as people type them; compared in command form (NFKC, case-folded, trimmed).
STOP_WORDS = frozenset(command_of(word) for word in _STOP_WORDS)
START_WORDS = frozenset(command_of(word) for word in _START_WORDS)


def classify(text: str | None, message_type: str) -> Intent:
    """STOP/START for the whole-message keywords, LOOKUP when an order is named, else HELP.

    Non-text messages (image, sticker, location, unsupported, ...) are OTHER.
    """
    if message_type not in TEXT_MESSAGE_TYPES:
        return Intent.OTHER
    if not text:
        return Intent.HELP
    command = command_of(text)
    if command in STOP_WORDS:
        return Intent.STOP
    if command in START_WORDS:
        return Intent.START
    if find_order_reference(text) is not None:
        return Intent.LOOKUP
    return Intent.HELP
