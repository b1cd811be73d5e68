"""render: order + rule → sanitised template parameters, pre-send checks, lookup replies."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier import render
from notifier.domain import (
    ContactPhone,
    Field,
    LineItem,
    Money,
    Order,
    RenderedTemplate,
    Rule,
    TemplateInfo,
    TemplateParam,
    Tracking,
)
from notifier.labels import Labels
from notifier.render import (
    PARAM_SOURCES,
    MissingParameter,
    format_money,
    lookup_reply,
    order_values,
    render_template,
    sanitize_param,
    template_problems,
)

EN = Labels.for_language("en")
SEED_REPLY = (
    "Hi Priya, here is your order update:\n"
    "Order #1023\n"
    "Payment: Paid\n"
    "Fulfilment: Preparing for dispatch\n"
    "Item: Classic Cotton Kurta (x2)\n"
    "Total: Rs. 1,299.00"
)
SHIPPED = Rule(Field.FULFILLMENT, "FULFILLED", "order_shipped", button_param="tracking_number")
FORBIDDEN = re.compile(r"[\n\r\t]| {5,}")


def seed_order(**changes: object) -> Order:
    """The guide's worked example (fixtures/wix/seed-order.json) as a domain Order."""
    order = Order(
        id="a1b2c3d4-5e6f-4a1b-8c2d-0123456789ab",
        number="1023",
        status="APPROVED",
        payment_status="PAID",
        fulfillment_status="NOT_FULFILLED",
        currency="INR",
        buyer_language="en",
        total=Money(Decimal("1299.00"), "INR"),
        first_name="Priya",
        last_name="Sharma",
        phones=(ContactPhone("+919820000001", None),),
        line_items=(LineItem("Classic Cotton Kurta", 2, Money(Decimal("649.50"), "INR")),),
    )
    return dataclasses.replace(order, **changes)  # type: ignore[arg-type]


# --- sanitize_param -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("Gift Set\nRed\tLarge", "Gift Set Red Large"),
        ("Leave at door     please", "Leave at door please"),
        ("Flat 2\r\nHigh St 5", "Flat 2 High St 5"),
    ],
)
def test_br08_whitespace_runs_become_one_space(raw: str, sent: str) -> None:
    """BR-08: newlines, tabs and long space runs collapse to single spaces."""
    assert sanitize_param(raw) == sent


def test_unicode_spaces_and_controls_are_cleaned() -> None:
    """Non-breaking/ideographic spaces collapse; control characters are dropped."""
    assert sanitize_param("\u00a0 Café\u3000\u2028 au\x00\x07 lait \u2003") == "Café au lait"


@pytest.mark.parametrize("raw", [None, "", "   ", "\n\t\r", "\x00\x1b", "\u200b\u200d"])
def test_empty_text_gives_fallback_or_none(raw: str | None) -> None:
    """Empty, blank or invisible text is never sent: the fallback, else None."""
    assert sanitize_param(raw) is None
    assert sanitize_param(raw, fallback="there") == "there"


def test_long_text_is_cut_with_ellipsis() -> None:
    """Text longer than max_length is cut to exactly max_length, ending in "…"."""
    result = sanitize_param("abcdefghij klmnop", max_length=11)
    assert result == "abcdefghij…"
    assert sanitize_param("short", max_length=5) == "short"


def test_emoji_is_kept_whole() -> None:
    """Characters outside the BMP survive sanitising and cutting."""
    assert sanitize_param("😀😀😀😀", max_length=3) == "😀😀…"


@given(text=st.text(), max_length=st.integers(min_value=1, max_value=300))
def test_sanitized_params_are_always_acceptable(text: str, max_length: int) -> None:
    """For any text: no newline/tab/5-space run, never blank, never longer than max_length."""
    result = sanitize_param(text, max_length=max_length, fallback="there")
    assert result is not None
    assert not FORBIDDEN.search(result)
    assert result.strip()
    assert result == result.strip()
    assert len(result) <= max_length


@given(text=st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_ascii_fast_path_cleans_exactly_like_the_unicode_path(text: str) -> None:
    """ASCII text takes a shortcut through sanitising; it gives what the general path gives."""
    assert render._collapse(text) == render._collapse_unicode(text)


def test_order_values_computes_only_the_sources_asked_for() -> None:
    """``only`` limits the answer to the named sources and ignores unknown names."""
    values = order_values(
        seed_order(), tracking=None, labels=EN, only=("total", "order_number", "bogus")
    )
    assert values == {"total": "Rs. 1,299.00", "order_number": "1023"}


# --- format_money ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("1299.00", "INR", "Rs. 1,299.00"),
        ("129900", "INR", "Rs. 1,29,900.00"),
        ("12345678.5", "INR", "Rs. 1,23,45,678.50"),
        ("0", "INR", "Rs. 0.00"),
        ("63.235", "USD", "$63.24"),
        ("45", "EUR", "€45.00"),
        ("1234.5", "GBP", "£1,234.50"),
        ("10.0", "BRL", "R$ 10.00"),
        ("1234.5", "JPY", "¥1,235"),
        ("12.5", "XYZ", "12.50 XYZ"),
        ("-5", "usd", "-$5.00"),
    ],
)
def test_format_money(amount: str, currency: str, text: str) -> None:
    """Amounts round half-up to the currency's decimals with its symbol and grouping."""
    assert format_money(Money(Decimal(amount), currency)) == text


def test_format_money_rejects_non_finite() -> None:
    """NaN is not a price: formatting it raises instead of printing "NaN"."""
    with pytest.raises(ValueError, match="non-finite"):
        format_money(Money(Decimal("NaN"), "INR"))


# --- order_values ---------------------------------------------------------------------------


def test_order_values_for_seed_order() -> None:
    """Every parameter source has the expected value for the seed order and a tracking."""
    tracking = Tracking("TRK123", "Delhivery", "https://track.example/TRK123")
    values = order_values(seed_order(), tracking=tracking, labels=EN)
    assert values == {
        "customer_name": "Priya",
        "first_name": "Priya",
        "last_name": "Sharma",
        "order_number": "1023",
        "total": "Rs. 1,299.00",
        "item_summary": "Classic Cotton Kurta (x2)",
        "payment_status": "Paid",
        "fulfillment_status": "Preparing for dispatch",
        "order_status": "Unknown",
        "tracking_number": "TRK123",
        "tracking_link": "https://track.example/TRK123",
        "carrier": "Delhivery",
    }
    assert set(values) == PARAM_SOURCES


def test_item_summary_counts_the_other_lines() -> None:
    """Several lines read "<first> (xN) and K more items" (singular for one)."""
    kurta = LineItem("Classic Cotton Kurta", 2)
    scarf = LineItem("Silk Scarf", 1)
    two = order_values(seed_order(line_items=(kurta, scarf)), tracking=None, labels=EN)
    three = order_values(seed_order(line_items=(kurta, scarf, scarf)), tracking=None, labels=EN)
    assert two["item_summary"] == "Classic Cotton Kurta (x2) and 1 more item"
    assert three["item_summary"] == "Classic Cotton Kurta (x2) and 2 more items"


def test_missing_values_are_none() -> None:
    """Absent total, items, tracking and number are None, not empty strings."""
    values = order_values(
        seed_order(total=None, line_items=(), number=None), tracking=None, labels=EN
    )
    for key in ("total", "item_summary", "tracking_number", "order_number", "carrier"):
        assert values[key] is None


def test_order_number_loses_hash() -> None:
    """An order number typed as "#1023" is sent as "1023"."""
    assert order_values(seed_order(number=" #1023"), tracking=None, labels=EN)["order_number"] == (
        "1023"
    )


# --- render_template ------------------------------------------------------------------------


def test_br06_tracking_goes_to_the_button_not_the_body() -> None:
    """BR-06: order_shipped has body [name, "10126"] and button suffix "TRK123", never 3 params."""
    rendered = render_template(
        SHIPPED,
        seed_order(number="10126"),
        language="en",
        tracking=Tracking("TRK123", "DHL", None),
        labels=EN,
    )
    assert rendered == RenderedTemplate(
        name="order_shipped",
        language="en",
        body=(TemplateParam("Priya"), TemplateParam("10126")),
        button_url_suffix="TRK123",
    )


def test_br06_pre_send_check_rejects_count_mismatch() -> None:
    """BR-06: a third body parameter is caught locally against the stored definition."""
    info = TemplateInfo(
        "order_shipped", "en", "APPROVED", "UTILITY", body_param_count=2, url_button_param_count=1
    )
    three = RenderedTemplate(
        "order_shipped", "en", (TemplateParam("Noa"), TemplateParam("10126"), TemplateParam("T"))
    )
    problems = template_problems(three, info)
    assert any("expects 2 body parameters, got 3" in problem for problem in problems)
    assert any("URL button" in problem for problem in problems)


@pytest.mark.parametrize(
    ("first", "last", "name"),
    [("", "Ferreira", "Ferreira"), ("", "", "there"), (None, None, "there")],
)
def test_br07_empty_first_name_falls_back(first: str | None, last: str | None, name: str) -> None:
    """BR-07: an empty first name becomes the last name, else "there"; never an empty param."""
    order = seed_order(number="10131", first_name=first, last_name=last)
    rule = Rule(Field.PAYMENT, "PAID", "order_payment_received")
    rendered = render_template(rule, order, language="en", tracking=None, labels=EN)
    assert [param.text for param in rendered.body] == [name, "10131"]


def test_br07_missing_order_number_blocks_the_send() -> None:
    """BR-07: without an order number, rendering raises MissingParameter naming it."""
    rule = Rule(Field.PAYMENT, "PAID", "order_payment_received")
    with pytest.raises(MissingParameter) as caught:
        render_template(rule, seed_order(number="  "), language="en", tracking=None, labels=EN)
    assert caught.value.param == "order_number"


def test_br08_product_name_is_sanitised_in_params() -> None:
    """BR-08: a product name with newline and tab is sent as one clean line."""
    order = seed_order(line_items=(LineItem("Gift Set\nRed\tLarge", 1),))
    rule = Rule(Field.PAYMENT, "PAID", "t", params=("item_summary",))
    rendered = render_template(rule, order, language="en", tracking=None, labels=EN)
    assert rendered.body == (TemplateParam("Gift Set Red Large (x1)"),)


def test_missing_total_raises_missing_parameter() -> None:
    """A rule that needs the total cannot render an order without one."""
    rule = Rule(Field.PAYMENT, "PAID", "p", params=("customer_name", "order_number", "total"))
    with pytest.raises(MissingParameter, match="'total'"):
        render_template(rule, seed_order(total=None), language="en", tracking=None, labels=EN)


def test_unknown_status_renders_as_unknown_label() -> None:
    """A status param for an unexpected Wix value reads "Unknown" instead of failing."""
    rule = Rule(Field.PAYMENT, "FULLY_REFUNDED", "r", params=("payment_status",))
    order = seed_order(payment_status="NEW_WIX_VALUE")
    rendered = render_template(rule, order, language="en", tracking=None, labels=EN)
    assert rendered.body == (TemplateParam("Unknown"),)


def test_named_template_params_carry_their_names() -> None:
    """With param_names, each body parameter is sent with its template name."""
    rule = Rule(
        Field.PAYMENT,
        "PAID",
        "order_paid",
        params=("customer_name", "order_number"),
        param_names=("customer_name", "order_id"),
    )
    rendered = render_template(rule, seed_order(), language="en", tracking=None, labels=EN)
    assert rendered.body == (
        TemplateParam("Priya", "customer_name"),
        TemplateParam("1023", "order_id"),
    )


def test_param_names_must_match_params() -> None:
    """A rule with a different number of names than params is a configuration error."""
    rule = Rule(Field.PAYMENT, "PAID", "p", param_names=("only_one",))
    with pytest.raises(ValueError, match="2 params but 1 names"):
        render_template(rule, seed_order(), language="en", tracking=None, labels=EN)


def test_unknown_param_source_is_rejected() -> None:
    """A rule naming a value the renderer does not know fails loudly, not with a blank."""
    rule = Rule(Field.PAYMENT, "PAID", "p", params=("shoe_size",))
    with pytest.raises(ValueError, match="shoe_size"):
        render_template(rule, seed_order(), language="en", tracking=None, labels=EN)


def test_button_falls_back_to_order_number_without_tracking() -> None:
    """With no tracking number known, the URL button suffix is the order number."""
    rendered = render_template(SHIPPED, seed_order(), language="en", tracking=None, labels=EN)
    assert rendered.button_url_suffix == "1023"


def test_button_suffix_has_no_spaces() -> None:
    """Whitespace inside a tracking number is removed from the URL suffix."""
    tracking = Tracking(" TRK 123\n456 ", None, None)
    rendered = render_template(SHIPPED, seed_order(), language="en", tracking=tracking, labels=EN)
    assert rendered.button_url_suffix == "TRK123456"


def test_language_is_passed_through() -> None:
    """The rendered template carries the language code it will be sent in."""
    rendered = render_template(SHIPPED, seed_order(), language="pt_BR", tracking=None, labels=EN)
    assert rendered.language == "pt_BR"


@given(
    first=st.one_of(st.none(), st.text()),
    last=st.one_of(st.none(), st.text()),
    item=st.text(),
)
def test_rendered_params_are_never_rejectable(
    first: str | None, last: str | None, item: str
) -> None:
    """Whatever the buyer typed, every body parameter is one non-blank line without 5-space runs."""
    order = seed_order(first_name=first, last_name=last, line_items=(LineItem(item, 1),))
    rule = Rule(
        Field.PAYMENT, "PAID", "p", params=("customer_name", "order_number", "item_summary")
    )
    rendered = render_template(rule, order, language="en", tracking=None, labels=EN)
    for param in rendered.body:
        assert param.text.strip()
        assert not FORBIDDEN.search(param.text)


# --- template_problems ----------------------------------------------------------------------


def shipped_info(**changes: object) -> TemplateInfo:
    info = TemplateInfo(
        "order_shipped", "en", "APPROVED", "UTILITY", body_param_count=2, url_button_param_count=1
    )
    return dataclasses.replace(info, **changes)  # type: ignore[arg-type]


def test_matching_template_has_no_problems() -> None:
    """A correct positional render against its approved utility template is OK."""
    rendered = render_template(SHIPPED, seed_order(), language="en", tracking=None, labels=EN)
    assert template_problems(rendered, shipped_info()) == []


def test_paused_or_marketing_template_is_a_problem() -> None:
    """A template not APPROVED or re-categorised as MARKETING is reported."""
    rendered = render_template(SHIPPED, seed_order(), language="en", tracking=None, labels=EN)
    problems = template_problems(rendered, shipped_info(status="PAUSED", category="MARKETING"))
    assert len(problems) == 2
    assert "PAUSED" in problems[0]
    assert "MARKETING" in problems[1]


def test_positional_params_for_named_template_is_a_problem() -> None:
    """Sending positional params to a NAMED template is caught (Meta's #100)."""
    rendered = render_template(SHIPPED, seed_order(), language="en", tracking=None, labels=EN)
    info = shipped_info(parameter_format="NAMED", body_param_names=("customer_name", "order_id"))
    assert template_problems(rendered, info) == [
        "template order_shipped/en is NAMED but positional parameters were given"
    ]


def test_named_params_for_positional_template_is_a_problem() -> None:
    """Sending named params to a positional template is caught."""
    rendered = RenderedTemplate(
        "order_shipped", "en", (TemplateParam("a", "x"), TemplateParam("b", "y")), "T"
    )
    assert template_problems(rendered, shipped_info()) == [
        "template order_shipped/en is positional but named parameters were given"
    ]


def test_missing_named_param_is_a_problem() -> None:
    """A named template missing one of its parameter names is reported by name."""
    rendered = RenderedTemplate(
        "order_shipped",
        "en",
        (TemplateParam("Priya", "customer_name"), TemplateParam("1023", "order_number")),
        "T",
    )
    info = shipped_info(parameter_format="NAMED", body_param_names=("customer_name", "order_id"))
    problems = template_problems(rendered, info)
    assert any("missing named parameters: order_id" in problem for problem in problems)
    assert any("order_number" in problem for problem in problems)


def test_named_params_in_any_order_are_ok() -> None:
    """Named parameters may come in any order, as Meta allows."""
    rendered = RenderedTemplate(
        "order_shipped",
        "en",
        (TemplateParam("1023", "order_id"), TemplateParam("Priya", "customer_name")),
        "T",
    )
    info = shipped_info(parameter_format="NAMED", body_param_names=("customer_name", "order_id"))
    assert template_problems(rendered, info) == []


def test_missing_button_suffix_is_a_problem() -> None:
    """A template with a dynamic URL button needs a suffix."""
    rendered = RenderedTemplate("order_shipped", "en", (TemplateParam("a"), TemplateParam("b")))
    assert template_problems(rendered, shipped_info()) == [
        "template order_shipped/en expects 1 URL button parameters, got 0"
    ]


def test_checking_against_another_template_is_a_problem() -> None:
    """Comparing with the definition of a different name/language is itself reported."""
    rendered = render_template(SHIPPED, seed_order(), language="en_US", tracking=None, labels=EN)
    assert template_problems(rendered, shipped_info()) == [
        "template order_shipped/en checked against order_shipped/en_US"
    ]


# --- lookup_reply ---------------------------------------------------------------------------


def test_seed_worked_example_reply_is_exact() -> None:
    """product.md's worked example comes out byte for byte."""
    assert lookup_reply(seed_order(), EN) == SEED_REPLY


def test_cancelled_order_adds_status_line() -> None:
    """A cancelled order has "Status: Cancelled" right after the Fulfilment line."""
    lines = lookup_reply(seed_order(status="CANCELED"), EN).split("\n")
    assert lines[3:5] == ["Fulfilment: Preparing for dispatch", "Status: Cancelled"]


def test_many_items_are_listed_up_to_five() -> None:
    """Up to five "Item:" lines, then "…and N more"."""
    items = tuple(LineItem(f"Item {n}", n) for n in range(1, 8))
    lines = lookup_reply(seed_order(line_items=items), EN).split("\n")
    assert [line for line in lines if line.startswith("Item:")] == [
        f"Item: Item {n} (x{n})" for n in range(1, 6)
    ]
    assert "…and 2 more" in lines


def test_reply_without_name_or_total() -> None:
    """No first/last name greets with the fallback; no total omits the Total line."""
    reply = lookup_reply(seed_order(first_name=None, last_name=" ", total=None), EN)
    assert reply.startswith("Hi there, here is your order update:\n")
    assert "Total:" not in reply


def test_reply_with_unknown_statuses() -> None:
    """Missing or unexpected statuses read "Unknown"."""
    reply = lookup_reply(seed_order(payment_status=None, fulfillment_status="LOST"), EN)
    assert "Payment: Unknown\nFulfilment: Unknown" in reply


def test_reply_is_capped_under_whatsapp_limit() -> None:
    """Even with huge overridden phrases the reply stays under 4,096 characters."""
    labels = Labels.for_language("en", {"en": {"reply.item": "Item: {item} " + "x" * 2000}})
    items = tuple(LineItem("Kurta", 1) for _ in range(5))
    reply = lookup_reply(seed_order(line_items=items), labels)
    assert len(reply) < 4096
    assert reply.endswith("…")


@given(
    first=st.one_of(st.none(), st.text()),
    names=st.lists(st.text(), max_size=12),
)
def test_reply_is_always_bounded(first: str | None, names: list[str]) -> None:
    """For any buyer text the reply starts with the greeting and stays under 4,096 chars."""
    order = seed_order(first_name=first, line_items=tuple(LineItem(n, 1) for n in names))
    reply = lookup_reply(order, EN)
    assert reply.startswith("Hi ")
    assert len(reply) < 4096
