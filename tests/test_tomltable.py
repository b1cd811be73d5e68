"""TomlTable readers: each returns a usable value and records every problem under its path."""

from __future__ import annotations

import tomllib
from datetime import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain import Field, Rule
from notifier.tomltable import (
    TomlTable,
    describe_kind,
    parse_clock,
    read_labels,
    read_rules,
)


def table_of(text: str, path: str = "section") -> tuple[TomlTable, list[str]]:
    problems: list[str] = []
    return TomlTable(tomllib.loads(text), path, problems), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00", time(0, 0)),
        ("08:00", time(8, 0)),
        ("21:30", time(21, 30)),
        ("23:59", time(23, 59)),
    ],
)
def test_parse_clock_reads_24_hour_times(text: str, expected: time) -> None:
    """HH:MM in 24-hour form becomes the matching datetime.time."""
    assert parse_clock(text) == expected


@pytest.mark.parametrize("text", ["24:00", "7:00", "21:60", "9pm", "21:00:00", " 21:00", ""])
def test_parse_clock_rejects_anything_else(text: str) -> None:
    """Hours past 23, one-digit hours, seconds, 12-hour forms and padding are all rejected."""
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock(text)


@given(st.text(max_size=8))
def test_clock_reader_and_parse_clock_agree_on_free_text(text: str) -> None:
    """A value the reader accepts always parses back to itself; a rejected one is one problem."""
    problems: list[str] = []
    value = TomlTable({"at": text}, "s", problems).clock("at", "21:00")
    if problems:
        assert value == "21:00"
        assert len(problems) == 1
        assert problems[0].startswith("s.at: ")
        return
    assert parse_clock(value).strftime("%H:%M") == text


def test_clock_reader_names_the_key_and_falls_back() -> None:
    """A bad time is reported under its path and the default is returned."""
    table, problems = table_of('start = "9pm"\n')
    assert table.clock("start", "21:00") == "21:00"
    assert problems == ["section.start: must be a 24-hour time like '21:00', got '9pm'"]


def test_boolean_reader_rejects_strings_and_numbers() -> None:
    """Only TOML true/false count as booleans; "yes" and 1 are problems."""
    table, problems = table_of('a = true\nb = "yes"\nc = 1\n')
    assert table.boolean("a", False) is True
    assert table.boolean("b", True) is True
    assert table.boolean("c", False) is False
    assert table.boolean("absent", True) is True
    assert problems == [
        "section.b: must be true or false, got a string",
        "section.c: must be true or false, got an integer",
    ]


def test_choice_reader_lists_the_options() -> None:
    """A value outside the options is one problem naming them; the default is returned."""
    table, problems = table_of('mode = "ignore"\n')
    assert table.choice("mode", "template", ("template", "drop")) == "template"
    assert problems == ["section.mode: must be 'drop' or 'template', got 'ignore'"]


def test_integer_reader_rejects_booleans_and_out_of_range() -> None:
    """TOML true is not an integer, and bounds are inclusive."""
    table, problems = table_of("a = true\nb = 0\nc = 1\n")
    assert table.integer("a", 5, 1, 9) == 5
    assert table.integer("b", 5, 1, 9) == 0
    assert table.integer("c", 5, 1, 9) == 1
    assert problems == [
        "section.a: must be an integer, got a boolean",
        "section.b: must be between 1 and 9, got 0",
    ]


def test_top_level_table_paths_have_no_leading_dot() -> None:
    """Problems at the root are named by the bare key."""
    table, problems = table_of("port = 1.5\n", path="")
    table.integer("port", 1, 1, 2)
    table.allow(("host",))
    assert problems == ["port: must be an integer, got a number", "port: unknown key"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "a boolean"), ("x", "a string"), (1, "an integer"), (1.0, "a number"), ([], "a list")],
)
def test_describe_kind_uses_toml_words(value: object, kind: str) -> None:
    """Problems name TOML kinds, with booleans never called integers."""
    assert describe_kind(value) == kind


def test_non_table_entries_in_arrays_are_reported_once() -> None:
    """A rule written as a bare string is one problem, not a cascade of missing keys."""
    table, problems = table_of('rules = ["payment:PAID"]\n', path="")
    assert read_rules(table) == ()
    assert problems == ["rules[0]: must be a table, got a string"]


def test_absent_rules_mean_inherit_and_an_empty_list_means_none() -> None:
    """No rules key gives None (inherit); `rules = []` gives () (notify nothing)."""
    assert read_rules(table_of("")[0]) is None
    assert read_rules(table_of("rules = []\n")[0]) == ()


def test_rule_defaults_fill_languages_and_params() -> None:
    """A rule with only event and template gets Rule's default languages and params."""
    table, problems = table_of('[[rules]]\nevent = "payment:PAID"\ntemplate = "paid"\n')
    assert read_rules(table) == (Rule(Field.PAYMENT, "PAID", "paid"),)
    assert problems == []


def test_bad_button_param_and_param_name_are_reported() -> None:
    """button_param must come from the vocabulary and param_names must be identifiers."""
    table, problems = table_of(
        '[[rules]]\nevent = "status:CANCELED"\ntemplate = "t"\n'
        'params = ["order_number"]\nparam_names = ["Order No"]\nbutton_param = "coupon"\n',
        path="",
    )
    assert read_rules(table) != ()
    assert len(problems) == 2
    assert problems[0].startswith("rules[0].param_names: 'Order No' must be lowercase")
    assert problems[1].startswith("rules[0].button_param: unknown parameter 'coupon'")


def test_labels_accept_quoted_and_dotted_keys() -> None:
    """Labels per language read both "payment.PAID" = ... and payment.PAID = ... alike."""
    table, problems = table_of(
        '[en]\n"payment.PAID" = "Payment received"\n[hi]\nfulfillment.FULFILLED = "भेज दिया"\n'
    )
    labels = read_labels(table)
    assert dict(labels["en"]) == {"payment.PAID": "Payment received"}
    assert dict(labels["hi"]) == {"fulfillment.FULFILLED": "भेज दिया"}
    assert problems == []


def test_empty_label_and_bad_language_are_problems() -> None:
    """A blank label and a language key that is not a code are reported under their paths."""
    table, problems = table_of('[en]\n"payment.PAID" = " "\n[english]\n"status.CANCELED" = "X"\n')
    read_labels(table)
    assert problems == [
        "section.en.payment.PAID: label must be a non-empty string",
        "section.english: is not a language code like 'en' or 'en_US'",
    ]
