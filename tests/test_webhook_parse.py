"""webhook_parse: Meta webhook bodies → frozen statuses, messages, template updates and problems."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.webhook_parse import (
    InboundMessage,
    ParsedWebhook,
    StatusError,
    StatusUpdate,
    TemplateUpdate,
    parse_webhook,
)

DATA = Path(__file__).parent / "data" / "whatsapp"
WEBHOOK_FIXTURES = (
    "inbound-quick-reply-button-webhook.json",
    "inbound-text-webhook-username-adopter-2026.json",
    "inbound-text-webhook.json",
    "status-webhook-delivered-freeform-reply.json",
    "status-webhook-delivered-utility-billable-v24.json",
    "status-webhook-delivered-utility-free-in-window.json",
    "status-webhook-failed-131026.json",
    "status-webhook-failed-131049-meta-example.json",
    "status-webhook-failed-132015-pacing-drop.json",
    "status-webhook-read-no-pricing.json",
    "status-webhook-sent-cbp-before-july-2025.json",
    "status-webhook-sent-utility-billable-v24.json",
    "status-webhook-sent-v23-legacy-shape.json",
    "template-category-update-webhook-impending.json",
    "template-status-update-webhook-paused.json",
    "webhook-value-level-error-130429.json",
)
TEMPLATE_WAMID = "wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSNDA1QTFCMjRGNTk3RjE4RTMyAA=="


def body(name: str) -> dict[str, Any]:
    """The webhook body of a recorded fixture (fixtures wrap it with its source)."""
    document: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return dict(document["body"])


def utc(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, tz=UTC)


def webhook(*values: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    """A minimal body with one change per value, all in one entry."""
    changes = [{"value": value, "field": field} for value in values]
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}]}


def assert_well_formed(parsed: ParsedWebhook) -> None:
    assert isinstance(parsed, ParsedWebhook)
    assert all(isinstance(problem, str) and problem for problem in parsed.problems)
    assert not any("internal error" in problem for problem in parsed.problems)


# --- recorded payloads -------------------------------------------------------------------------


@pytest.mark.parametrize("name", WEBHOOK_FIXTURES)
def test_every_recorded_webhook_parses_without_problems(name: str) -> None:
    """Each recorded Meta webhook yields at least one status, message or field, and no problem."""
    parsed = parse_webhook(body(name))
    assert parsed.problems == ()
    assert parsed.statuses or parsed.messages or parsed.other_fields or parsed.value_errors


def test_inbound_text_fixture_gives_every_field() -> None:
    """A text message: id, sender, UTC time, body, profile name and phone number id are read."""
    (message,) = parse_webhook(body("inbound-text-webhook.json")).messages
    assert message == InboundMessage(
        id="wamid.HBgMOTE5ODc2NTQzMjEwFQIAEhgUM0VCMDRBN0I5QzY4RjA1QTQ2NUMA",
        from_wa_id="919876543210",
        user_id=None,
        timestamp=datetime(2026, 1, 1, 8, 0, tzinfo=UTC),
        type="text",
        text="Where is my order #10042?",
        profile_name="Priya Sharma",
        raw=message.raw,
        phone_number_id="106540352242922",
    )
    assert message.raw["id"] == message.id


def test_br16_decoded_text_keeps_accents_emoji_and_slash() -> None:
    """BR-16: the signed raw body decodes to exactly the text the customer typed."""
    raw = (DATA / "br16-inbound-text-body.json").read_bytes()
    (message,) = parse_webhook(json.loads(raw)).messages
    assert message.text == "Café 😀 order #10126 / noa@example.com"
    assert message.id == "wamid.TEST.IN.0001"
    assert message.timestamp == datetime(2025, 1, 1, 10, 0, tzinfo=UTC)
    assert message.profile_name == "Noa B"


def test_quick_reply_button_text_is_the_button_text() -> None:
    """A template quick-reply tap has type button and the button's text as its text."""
    (message,) = parse_webhook(body("inbound-quick-reply-button-webhook.json")).messages
    assert (message.type, message.text, message.from_wa_id) == (
        "button",
        "Track order",
        "919876543210",
    )


def test_button_without_text_falls_back_to_payload() -> None:
    """A button message with only a payload uses the payload as its text."""
    value = {"messages": [{"id": "m1", "from": "1", "type": "button", "button": {"payload": "P"}}]}
    (message,) = parse_webhook(webhook(value)).messages
    assert message.text == "P"


@pytest.mark.parametrize("reply_kind", ["button_reply", "list_reply"])
def test_interactive_reply_text_is_its_title(reply_kind: str) -> None:
    """An interactive button or list reply has the chosen row's title as its text."""
    interactive = {"type": reply_kind, reply_kind: {"id": "x", "title": "Order 1023"}}
    value = {
        "messages": [{"id": "m", "from": "1", "type": "interactive", "interactive": interactive}]
    }
    (message,) = parse_webhook(webhook(value)).messages
    assert message.text == "Order 1023"


def test_username_adopter_has_no_wa_id_but_a_user_id() -> None:
    """An empty ``from`` becomes None and the BSUID is kept, with the profile name."""
    (message,) = parse_webhook(body("inbound-text-webhook-username-adopter-2026.json")).messages
    assert message.from_wa_id is None
    assert message.user_id == "user.93737..."
    assert message.profile_name == "Sheena Nelson"


def test_user_id_falls_back_to_the_contact() -> None:
    """Without ``from_user_id`` the sender's BSUID comes from contacts[].user_id."""
    value = {
        "contacts": [{"wa_id": "", "user_id": "user.1", "profile": {"name": "U"}}],
        "messages": [{"id": "m", "from": "", "type": "text", "text": {"body": "hi"}}],
    }
    (message,) = parse_webhook(webhook(value)).messages
    assert (message.from_wa_id, message.user_id, message.profile_name) == (None, "user.1", "U")


def test_profile_name_comes_from_the_matching_contact() -> None:
    """With two contacts in one value, each message gets its own sender's name."""
    value = {
        "contacts": [
            {"wa_id": "111", "profile": {"name": "Ann"}},
            {"wa_id": "222", "profile": {"name": "Bob"}},
        ],
        "messages": [
            {"id": "a", "from": "222", "type": "text", "text": {"body": "x"}},
            {"id": "b", "from": "111", "type": "text", "text": {"body": "y"}},
            {"id": "c", "from": "333", "type": "text", "text": {"body": "z"}},
        ],
    }
    names = [m.profile_name for m in parse_webhook(webhook(value)).messages]
    assert names == ["Bob", "Ann", None]


def test_billable_delivered_status_keeps_pricing_and_callback() -> None:
    """A delivered status carries wamid, UTC time, recipient, callback data and raw pricing."""
    (status,) = parse_webhook(body("status-webhook-delivered-utility-billable-v24.json")).statuses
    assert status == StatusUpdate(
        wamid=TEMPLATE_WAMID,
        status="delivered",
        timestamp=utc(1767254462),
        recipient_id="919876543210",
        callback_data="wix-order:10042:payment:PAID",
        pricing={
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "utility",
        },
        errors=(),
        raw=status.raw,
        phone_number_id="106540352242922",
    )


def test_failed_status_carries_code_title_and_details() -> None:
    """A failed status has its errors[] as StatusError values and no pricing."""
    (status,) = parse_webhook(body("status-webhook-failed-131026.json")).statuses
    assert status.status == "failed"
    assert status.pricing is None
    assert status.errors == (
        StatusError(code=131026, title="Message undeliverable", details="Message Undeliverable."),
    )


def test_read_status_without_pricing() -> None:
    """A read status with no pricing parses with pricing None and no errors."""
    (status,) = parse_webhook(body("status-webhook-read-no-pricing.json")).statuses
    assert (status.status, status.pricing, status.errors) == ("read", None, ())


def test_template_status_update_is_reported_as_other_field_and_update() -> None:
    """A PAUSED template webhook lists its field and gives a TemplateUpdate with name and event."""
    parsed = parse_webhook(body("template-status-update-webhook-paused.json"))
    assert parsed.other_fields == ("message_template_status_update",)
    (update,) = parsed.template_updates
    assert update == TemplateUpdate(
        field_name="message_template_status_update",
        template_id="1304694804498707",
        name="order_payment_update",
        language="en",
        event="PAUSED",
        category="UTILITY",
        previous_category=None,
        new_category=None,
        correct_category=None,
        reason="NONE",
        raw=update.raw,
    )


def test_template_category_update_keeps_the_categories() -> None:
    """A template_category_update webhook gives the template and its new/correct categories."""
    parsed = parse_webhook(body("template-category-update-webhook-impending.json"))
    assert parsed.other_fields == ("template_category_update",)
    (update,) = parsed.template_updates
    assert (update.name, update.new_category, update.correct_category, update.event) == (
        "order_payment_update",
        "UTILITY",
        "MARKETING",
        None,
    )


def test_value_level_errors_are_collected() -> None:
    """A value with errors[] and no statuses/messages reports those errors."""
    parsed = parse_webhook(body("webhook-value-level-error-130429.json"))
    assert [error.code for error in parsed.value_errors] == [130429]
    assert parsed.value_errors[0].title == "Rate limit hit"


def test_unknown_fields_are_listed_once() -> None:
    """Repeated changes of an unknown field name it once in other_fields, without problems."""
    parsed = parse_webhook(webhook({"a": 1}, {"b": 2}, field="account_update"))
    assert (parsed.other_fields, parsed.problems) == (("account_update",), ())


# --- lean and broken payloads ---------------------------------------------------------------------

BR17_CHANGES = (
    {
        "contacts": [{"wa_id": "4915123456789"}],
        "statuses": [
            {
                "id": "wamid.UNKNOWN",
                "status": "failed",
                "recipient_id": "4915123456789",
                "errors": [{"code": 131026}],
            }
        ],
    },
    {
        "messages": [
            {
                "from": "4915123456789",
                "id": "wamid.IN.2",
                "type": "unsupported",
                "errors": [{"code": 131051}],
            }
        ]
    },
    {
        "contacts": [{"wa_id": "4915123456789"}],
        "messages": [
            {"from": "4915123456789", "id": "wamid.IN.3", "type": "text", "text": {"body": "10126"}}
        ],
    },
)


def test_br17_lean_payload_parses_every_change() -> None:
    """BR-17: a status, an unsupported message and a text message, all lean, parse cleanly."""
    parsed = parse_webhook(webhook(*BR17_CHANGES))
    assert parsed.problems == ()
    (status,) = parsed.statuses
    assert (status.wamid, status.timestamp, status.errors) == (
        "wamid.UNKNOWN",
        None,
        (StatusError(131026, None, None),),
    )
    unsupported, text = parsed.messages
    assert (unsupported.type, unsupported.text, unsupported.errors[0].code) == (
        "unsupported",
        None,
        131051,
    )
    assert (text.id, text.text, text.from_wa_id, text.phone_number_id) == (
        "wamid.IN.3",
        "10126",
        "4915123456789",
        None,
    )


def test_bad_items_are_isolated_with_their_path() -> None:
    """A status without id and a non-object change become problems; their neighbours still parse."""
    good = {"id": "wamid.OK", "status": "sent"}
    payload = webhook({"statuses": [{"status": "sent"}, good]})
    payload["entry"][0]["changes"].insert(0, "junk")
    parsed = parse_webhook(payload)
    assert parsed.problems == (
        "entry[0].changes[0]: not an object (string)",
        "entry[0].changes[1].value.statuses[0]: no id",
    )
    assert [s.wamid for s in parsed.statuses] == ["wamid.OK"]


def test_bad_timestamp_is_a_problem_but_keeps_the_message() -> None:
    """An unparseable timestamp is reported and left None; the message itself is kept."""
    value = {"messages": [{"id": "m", "from": "1", "type": "text", "timestamp": "soon"}]}
    parsed = parse_webhook(webhook(value))
    assert parsed.problems == (
        "entry[0].changes[0].value.messages[0].timestamp: not a unix time (string)",
    )
    assert parsed.messages[0].timestamp is None


def test_integer_timestamp_is_accepted() -> None:
    """A unix time sent as a JSON integer reads the same as the usual digit string."""
    value = {"statuses": [{"id": "w", "status": "sent", "timestamp": 1767254462}]}
    assert parse_webhook(webhook(value)).statuses[0].timestamp == utc(1767254462)


@pytest.mark.parametrize("payload", [None, [], "x", 5, True, {}, {"entry": {}}])
def test_non_webhook_values_give_a_problem_and_nothing_else(payload: object) -> None:
    """Anything that is not an object with an entry list yields one problem and no items."""
    parsed = parse_webhook(payload)
    assert len(parsed.problems) == 1
    assert (parsed.statuses, parsed.messages, parsed.other_fields) == ((), (), ())


# --- properties -----------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=25,
)
meta_keys = st.sampled_from(
    [
        "entry",
        "changes",
        "value",
        "field",
        "statuses",
        "messages",
        "contacts",
        "id",
        "status",
        "timestamp",
        "errors",
        "pricing",
        "text",
        "body",
        "type",
        "from",
        "profile",
        "metadata",
    ]
)
meta_shaped = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(meta_keys, children),
    max_leaves=30,
)


@given(json_values | meta_shaped)
def test_any_json_value_never_raises(payload: object) -> None:
    """Any JSON value, random or webhook-shaped, parses without raising; problems are strings."""
    assert_well_formed(parse_webhook(payload))


def json_paths(node: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key/index path inside ``node``."""
    children: list[tuple[str | int, object]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    paths: list[tuple[str | int, ...]] = []
    for key, child in children:
        paths.append((*prefix, key))
        paths.extend(json_paths(child, (*prefix, key)))
    return paths


DROP = object()


def mutate(document: dict[str, Any], path: tuple[str | int, ...], new: object) -> dict[str, Any]:
    """A deep copy of ``document`` with the value at ``path`` dropped or replaced by ``new``."""
    mutated = copy.deepcopy(document)
    parent: Any = mutated
    for key in path[:-1]:
        parent = parent[key]
    if new is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return mutated


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> dict[str, Any]:
    document = body(draw(st.sampled_from(WEBHOOK_FIXTURES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = json_paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        document = mutate(document, path, draw(st.just(DROP) | json_values))
    return document


@settings(max_examples=300)
@given(mutated_fixtures())
def test_mutated_fixtures_never_raise(payload: dict[str, Any]) -> None:
    """Recorded webhooks with keys dropped or values swapped for wrong types never raise."""
    assert_well_formed(parse_webhook(payload))


@given(st.sampled_from(["statuses", "messages"]), json_values)
def test_one_bad_item_never_hides_a_good_neighbour(kind: str, junk: object) -> None:
    """Whatever the first item is, the well-formed second item of the same list is returned."""
    good = (
        {"id": "wamid.GOOD", "status": "sent"}
        if kind == "statuses"
        else {"id": "wamid.GOOD", "from": "1", "type": "text", "text": {"body": "hi"}}
    )
    parsed = parse_webhook(webhook({kind: [junk, good]}))
    items: tuple[StatusUpdate | InboundMessage, ...] = (
        parsed.statuses if kind == "statuses" else parsed.messages
    )
    ids = [item.wamid if isinstance(item, StatusUpdate) else item.id for item in items]
    assert ids[-1] == "wamid.GOOD"
    assert_well_formed(parsed)
