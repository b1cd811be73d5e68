"""signatures: Meta's X-Hub-Signature-256 HMAC over the raw request bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.signatures import is_valid, sign

DATA = Path(__file__).parent / "data" / "whatsapp"
BR16_SECRET = "test_app_secret"
BR16_HEADER = "sha256=de95c12917d2b31ef4d1e82685607d094abb9615d68a697113fb654fa2ede4fe"


@pytest.fixture
def br16_body() -> bytes:
    body = (DATA / "br16-inbound-text-body.json").read_bytes()
    assert len(body) == 475
    return body


def test_br16_raw_body_with_escapes_is_accepted(br16_body: bytes) -> None:
    """The exact 475-byte body with \\u and \\/ escapes verifies against Meta's header."""
    assert is_valid(BR16_SECRET, br16_body, BR16_HEADER)


def test_br16_sign_reproduces_the_header(br16_body: bytes) -> None:
    """sign() gives the header value computed over the raw bytes."""
    assert sign(BR16_SECRET, br16_body) == BR16_HEADER


def test_br16_reserialised_body_does_not_verify(br16_body: bytes) -> None:
    """Parsing and re-dumping the JSON changes the bytes, so the original header fails."""
    redumped = json.dumps(json.loads(br16_body), separators=(",", ":")).encode()
    assert sign(BR16_SECRET, redumped).startswith("sha256=522991ab")
    assert not is_valid(BR16_SECRET, redumped, BR16_HEADER)


def test_br16b_altered_body_is_rejected(br16_body: bytes) -> None:
    """Changing 10126 to 10127 under the original header fails verification."""
    altered = br16_body.replace(b"10126", b"10127")
    assert altered != br16_body
    assert not is_valid(BR16_SECRET, altered, BR16_HEADER)


def test_br16c_missing_header_is_rejected(br16_body: bytes) -> None:
    """No header (None or empty) fails closed."""
    assert not is_valid(BR16_SECRET, br16_body, None)
    assert not is_valid(BR16_SECRET, br16_body, "")


def test_wrong_secret_is_rejected(br16_body: bytes) -> None:
    """A header made with another secret does not verify."""
    assert not is_valid("another_secret", br16_body, BR16_HEADER)


def test_empty_secret_fails_closed(br16_body: bytes) -> None:
    """An unconfigured (empty) app secret never accepts, even a matching empty-key HMAC."""
    assert not is_valid("", br16_body, sign("", br16_body))


@pytest.mark.parametrize(
    "header",
    [
        "de95c12917d2b31ef4d1e82685607d094abb9615d68a697113fb654fa2ede4fe",
        "sha1=de95c12917d2b31ef4d1e82685607d094abb9615d68a697113fb654fa2ede4fe",
        "sha256=",
        "sha256=de95c129",
        "sha256=de95c12917d2b31ef4d1e82685607d094abb9615d68a697113fb654fa2ede4fe00",
        "sha256=zz95c12917d2b31ef4d1e82685607d094abb9615d68a697113fb654fa2ede4fe",
        "sha256=dé95c12917d2b31ef4d1e82685607d094abb9615d68a697113fb654fa2ede4f",
    ],
)
def test_malformed_headers_are_rejected(br16_body: bytes, header: str) -> None:
    """A header without the sha256= scheme or without 64 hex digits is rejected, not raised."""
    assert not is_valid(BR16_SECRET, br16_body, header)


def test_header_case_and_surrounding_space_are_tolerated(br16_body: bytes) -> None:
    """Upper-case hex or scheme and stray whitespace around the header still verify."""
    assert is_valid(BR16_SECRET, br16_body, "  " + BR16_HEADER.upper() + " ")


def test_meta_doc_example_fixture_verifies() -> None:
    """The recorded Meta doc example verifies, and a pretty-printed copy of it does not."""
    example = json.loads((DATA / "webhook-signature-example.json").read_text(encoding="utf-8"))
    raw = example["raw_body"].encode("utf-8")
    header = example["headers"]["X-Hub-Signature-256"]
    assert is_valid(example["app_secret"], raw, header)
    pretty = json.dumps(json.loads(raw), indent=2).encode()
    assert not is_valid(example["app_secret"], pretty, header)


@given(secret=st.text(), body=st.binary(), header=st.one_of(st.none(), st.text()))
def test_is_valid_never_raises(secret: str, body: bytes, header: str | None) -> None:
    """Any secret, body and header text gives a bool, and random headers never verify."""
    result = is_valid(secret, body, header)
    assert result is (bool(secret) and header is not None and header.strip() == sign(secret, body))


@given(secret=st.text(min_size=1), body=st.binary())
def test_sign_round_trips(secret: str, body: bytes) -> None:
    """Whatever is signed with a non-empty secret verifies with the same secret."""
    assert is_valid(secret, body, sign(secret, body))
