"""Tests for bot.flow.expressions: the RapidPro-style @ syntax, its errors, and its sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.flow import expressions
from bot.flow.expressions import CompiledText, ExpressionError, compile_text, evaluate

CONTACT = {
    "uuid": "c0ffee00-0000-4000-8000-000000000001",
    "name": "Ana María Quispe",
    "first_name": "Ana",
    "language": "spa",
    "urn": "whatsapp:51999888777",
    "channel": "wa-main",
}
CTX: dict[str, Any] = {
    "contact": CONTACT,
    "fields": {"order_id": "A-17", "city": "cusco", "empty": "", "points": "12"},
    "results": {
        "age": {"value": "21", "category": "Adult"},
        "color": {"value": "Rojo", "category": "Red"},
    },
    "input": {"text": "Quiero pan"},
    "trigger": {"params": {"campaign": "spring", "code": 7}},
    "webhook": {
        "status": "ok",
        "total": 12.5,
        "count": 3,
        "paid": True,
        "coupon": None,
        "customer": {"address": {"street": "Av. Sol 123"}},
        "items": [{"name": "pan", "qty": 2}, {"name": "leche", "qty": 1}],
        "año": 2024,
        "नाम": "राम",
        "dirección": {"número": "12"},
    },
    "run": {"uuid": "run-1"},
    "now": datetime(2024, 3, 5, 14, 7, 9, tzinfo=UTC),
}


@pytest.fixture(autouse=True)
def no_fallback_renders(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """A render that hit the last-resort fallback would look like empty output; fail instead."""
    yield
    if request.node.name != "test_render_never_raises":
        assert not [r for r in caplog.records if r.name == "bot.flow.expressions"]


RENDER_CASES: list[tuple[str, str]] = [
    # every reference kind
    ("@contact.name", "Ana María Quispe"),
    ("@contact.first_name", "Ana"),
    ("@contact.language", "spa"),
    ("@contact.urn", "whatsapp:51999888777"),
    ("@contact.uuid", "c0ffee00-0000-4000-8000-000000000001"),
    ("@contact.channel", "wa-main"),
    ("@contact", "Ana María Quispe"),
    ("@fields.order_id", "A-17"),
    ("@results.age", "21"),
    ("@results.age.value", "21"),
    ("@results.age.category", "Adult"),
    ("@input.text", "Quiero pan"),
    ("@input", "Quiero pan"),
    ("@trigger.params.campaign", "spring"),
    ("@trigger.params.code", "7"),
    ("@webhook.status", "ok"),
    ("@webhook.customer.address.street", "Av. Sol 123"),
    ("@webhook.items.0.name", "pan"),
    ("@webhook.items.1.qty", "1"),
    ("@webhook.total @webhook.count @webhook.paid [@webhook.coupon]", "12.5 3 true []"),
    ("@webhook.items.0", '{"name": "pan", "qty": 2}'),
    ("@run.uuid", "run-1"),
    # names in any script: letters and marks beyond ASCII are part of the name
    ("@webhook.año", "2024"),
    ("@(webhook.año)", "2024"),
    ("@(webhook.año + 1) @webhook.dirección.número.", "2025 12."),
    ("@webhook.नाम @(webhook.नाम)", "राम राम"),
    ("@contactó @webhookś", "@contactó @webhookś"),  # not one of the top names
    # surrounding text, @@ and things that are not references
    ("Hola @contact.first_name, tu pedido @fields.order_id.", "Hola Ana, tu pedido A-17."),
    ("Hola @contact.name.", "Hola Ana María Quispe."),
    ("¿@contact.first_name?", "¿Ana?"),
    ("(@contact.first_name)!", "(Ana)!"),
    ("@contact.first_name...", "Ana..."),
    ("ana@example.com", "ana@example.com"),
    ("write to support@fields.com", "write to support"),  # RapidPro rule: fields is a name
    ("cost @ 5", "cost @ 5"),
    ("email me @ home", "email me @ home"),
    ("@home @contacts @Contact.name", "@home @contacts @Contact.name"),
    ("trailing @", "trailing @"),
    ("@@", "@"),
    ("@@contact.name", "@contact.name"),
    ("@@@contact.first_name", "@Ana"),
    ("100%@@ sure", "100%@ sure"),
    ("line one\r\nline two @contact.first_name\n\n", "line one\r\nline two Ana\n\n"),
    # missing values render empty
    ("[@fields.nope]", "[]"),
    ("[@results.nope] [@results.nope.category]", "[] []"),
    ("[@webhook.items.9.name] [@webhook.status.deeper] [@webhook.items.x]", "[] [] []"),
    ("[@trigger.params.nope.deeper]", "[]"),
    # @(...) literals, strings and quoting
    ('@("")', ""),
    ('[@("")]', "[]"),
    ('@("say ""hi""")', 'say "hi"'),
    ('@("a)b(c")', "a)b(c"),
    ('@("{{ 7*7 }}")', "{{ 7*7 }}"),
    ("@(42) @(1.50) @(007)", "42 1.5 7"),
    ("@(true) @(FALSE)", "true false"),
    # each operator
    ('@(contact.first_name & " " & fields.city)', "Ana cusco"),
    ("@(2 + 3) @(2 - 3) @(2 * 3.5) @(10 / 4) @(-2)", "5 -1 7 2.5 -2"),
    ("@(0.1 + 0.2) @(10 / 3)", "0.3 3.3333333333"),
    ("@(1 + 2 * 3) @((1 + 2) * 3) @(2 * -(1 + 1))", "7 9 -4"),
    ('@(1 + 2 & "x")', "3x"),
    ("@(fields.points + 1) @(webhook.total * 2)", "13 25"),
    (
        '@(fields.city = "CUSCO") @(fields.city != "Cusco") @(fields.city <> "lima")',
        "true false true",
    ),
    ('@("10" = 10.0) @(1 = 2)', "true false"),
    ("@(3 < 10) @(3 <= 3) @(3 > 10) @(10 >= 3)", "true true false true"),
    ("@(results.age.value > 17) @(results.age >= 22)", "true false"),
    # each function
    ('@(upper(contact.first_name) & "!")', "ANA!"),
    ("@(lower(contact.name)) @(title(fields.city))", "ana maría quispe Cusco"),
    ("@(UPPER(fields.city))", "CUSCO"),
    ("@(length(contact.first_name)) @(length(webhook.items)) @(length(fields.nope))", "3 2 0"),
    ('@(default(fields.nick, contact.first_name)) @(default(fields.empty, "-"))', "Ana -"),
    ('@(default(fields.city, "-"))', "cusco"),
    ('@(if(results.age.value > 17, "adult", "minor"))', "adult"),
    ('@(if(results.age.value > 30, "old", "young"))', "young"),
    ('@(if(fields.nope, "y", "n")) @(if("false", "y", "n")) @(if(0, "y", "n"))', "n n n"),
    ('@(if(fields.city, "y", "n")) @(if(2, "y", "n"))', "y y"),
    ('@(format_date("2024-03-05"))', "05/03/2024"),
    (
        '@(format_date("2024-03-05T09:04:07-05:00", "YYYY-MM-DD hh:mm:ss (YY)"))',
        "2024-03-05 09:04:07 (24)",
    ),
    ("@(now())", "2024-03-05T14:07:09+00:00"),
    ('@(format_date(now(), "DD/MM hh:mm"))', "05/03 14:07"),
    (
        '@(format_date("2024-03-05", "YYYYMMDD")) @(format_date(now(), "hh:mm:ss"))',
        "20240305 14:07:09",
    ),
    # a format that is not a literal is read when rendering: an unknown token is an error
    ('[@(format_date("2024-03-05", fields.city))]', "[]"),
    # nesting
    ('@(upper(default(fields.nick, title(fields.city))) & "!")', "CUSCO!"),
    ('@(if(length(contact.first_name) = 3, upper("yes"), "no"))', "YES"),
    # render-time errors blank only their own expression
    ("a @(1/0) b @contact.first_name", "a  b Ana"),
    ('[@(format_date("not a date"))] [@(fields.city + 1)] [@("abc" < 1)]', "[] [] []"),
    ('[@(1/0 & "x")] [@(upper(1/0))] [@(if(1/0, "y", "n"))]', "[] [] []"),
    ('@(default(1/0, "fallback"))', "fallback"),
    ('@(if(true, "ok", 1/0))', "ok"),
    # text that looks like Jinja is only text
    (
        "{{ 7*7 }} {% for x in y %} {# c #} {% raw %}",
        "{{ 7*7 }} {% for x in y %} {# c #} {% raw %}",
    ),
    ("{{ @contact.first_name }}", "{{ Ana }}"),
]


@pytest.mark.parametrize(("text", "expected"), RENDER_CASES)
def test_render(text: str, expected: str) -> None:
    assert evaluate(text, CTX) == expected


@pytest.mark.parametrize(
    "text",
    [
        "@contact.name @contact.first_name @fields.x @results.x @results.x.category",
        "@input.text @trigger.params.x @webhook.a.0.b @run.uuid @contact @input",
        '@(upper(contact.first_name) & "!" & default(results.x, ""))',
    ],
)
@pytest.mark.parametrize(
    "context",
    [
        {},
        {"contact": {}, "fields": {}, "results": {}, "input": {}, "trigger": {}, "webhook": None},
        {"contact": "x", "fields": None, "results": ["x"], "trigger": 5, "webhook": [1]},
    ],
)
def test_missing_or_odd_values_render_empty(text: str, context: dict[str, Any]) -> None:
    assert evaluate(text, context).strip(" !") == ""


def test_now_defaults_to_current_utc_time() -> None:
    rendered = datetime.fromisoformat(evaluate("@(now())", {}))
    assert abs(rendered - datetime.now(UTC)) < timedelta(seconds=5)
    naive = evaluate("@(now())", {"now": datetime(2024, 1, 2, 3, 4)})
    assert naive == "2024-01-02T03:04:00+00:00"


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("Hi @(1 +", "unterminated @( expression", 3),
        ("@(upper(x)", "unterminated @( expression", 0),
        ('@("abc)', "unterminated string", 2),
        ("@(foo)", "unknown name 'foo'", 2),
        ("@(Contact.name)", "unknown name 'Contact'", 2),
        ("@(bar(1))", "unknown function 'bar'", 2),
        ("@(contact.name(1))", "unknown function 'contact.name'", 2),
        ("ok @(upper(1, 2))", "upper() takes 1 argument(s), got 2", 5),
        ("@(if(true, 1))", "if() takes 3 argument(s), got 2", 2),
        ("@(format_date())", "format_date() takes 1 to 2 argument(s), got 0", 2),
        ("@(now(1))", "now() takes 0 argument(s), got 1", 2),
        ("@()", "expected a value but found end of expression", 2),
        ("@(1 + )", "expected a value but found end of expression", 6),
        ("@(1 2)", "unexpected '2'", 4),
        ("@(1 < 2 < 3)", "unexpected '<'", 8),
        ("@(contact.name.)", "unexpected character '.'", 14),
        ("@(fields.x $)", "unexpected character '$'", 11),
        ("@(upper(1,))", "expected a value but found ')'", 10),
        ("@((1 + 2)", "unterminated @( expression", 0),
        ("@(upper 1)", "upper() must be called with parentheses", 2),
        ("@(contact.__class__)", "names may not start with '_': '__class__'", 10),
        ("Hi @contact.__class__", "names may not start with '_': '__class__'", 12),
        ("@webhook.items.0._secret", "names may not start with '_': '_secret'", 17),
        ("@(_x)", "unknown name '_x'", 2),
        (
            '@(format_date(now(), "YYYYYYY"))',
            "format_date(): unknown token 'YYYYYYY' in 'YYYYYYY' (tokens: YYYY YY MM DD hh mm ss)",
            21,
        ),
        (
            '@(format_date(now(), "D/M/YYYY"))',
            "format_date(): unknown token 'D' in 'D/M/YYYY' (tokens: YYYY YY MM DD hh mm ss)",
            21,
        ),
        (
            '@(format_date(now(), "DD de MM"))',
            "format_date(): unknown token 'd' in 'DD de MM' (tokens: YYYY YY MM DD hh mm ss)",
            21,
        ),
    ],
)
def test_compile_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_text(text)
    assert (info.value.message, info.value.position) == (message, position)
    assert isinstance(info.value, ValueError)
    assert str(position) in str(info.value)


# ---- sandbox: flow text and contact data can never run code or reach Python internals ----


def test_template_syntax_in_contact_data_is_output_verbatim() -> None:
    evil = "{{ ''.__class__.__mro__ }}{% for x in range(3) %}x{% endfor %}"
    context = {"contact": {**CONTACT, "name": evil}, "webhook": {"msg": evil}}
    assert evaluate("Hola @contact.name", context) == f"Hola {evil}"
    assert evaluate("@(upper(webhook.msg))", context) == evil.upper()


def test_references_in_data_are_not_expanded() -> None:
    context = {**CTX, "fields": {"x": "@contact.name @(1+1) @@"}}
    assert evaluate("@fields.x", context) == "@contact.name @(1+1) @@"


def test_string_literals_cannot_break_out_of_the_generated_code() -> None:
    for text in ["@(\"'); import os; ('\")", '@("\\ }}{{ x \\\\ ")', '@("""""")']:
        literal = compile_text(text)
        assert literal.render({}) == text[3:-2].replace('""', '"')


def test_attributes_are_never_read() -> None:
    class Contact:
        name = "from an attribute"

    assert evaluate("[@contact.name]", {"contact": Contact()}) == "[]"
    # dict methods are attributes too, so they are not reachable either
    assert evaluate("[@fields.items] [@fields.keys] [@contact.name.upper]", CTX) == "[] [] []"


def test_underscore_keys_are_refused_even_from_data() -> None:
    assert expressions._lookup({"_secret": 1}, "_secret") is None
    assert expressions._ENV.getattr({"_secret": 1}, "_secret") is None
    assert expressions._ENV.getitem(CONTACT, "__class__") is None


@pytest.mark.parametrize(
    "text", ["@(eval(1))", "@(range(3))", "@(lipsum())", "@(fn_upper(1))", "@(dict())"]
)
def test_only_listed_functions_can_be_called(text: str) -> None:
    with pytest.raises(ExpressionError, match="unknown function"):
        compile_text(text)


def test_environment_exposes_only_our_functions() -> None:
    assert expressions._ENV.globals == {}
    compiled = compile_text('@(upper(contact.name) & "!")')
    assert compiled._template is not None
    assert set(compiled._template.globals) == {"fn_upper", "fn_concat"}


def test_render_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = CompiledText("Hola @contact.name!")
    assert compiled._template is not None

    def broken(*args: object) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(compiled._template, "render", broken)
    assert compiled.render(CTX) == "Hola !"


# ---- compiled object ----


def test_compile_is_cached() -> None:
    text = "Cached @contact.first_name"
    assert compile_text(text) is compile_text(text)
    assert compile_text("Static text") is compile_text("Static text")


def test_static_text_fast_path() -> None:
    for text in ["Hola, ¿cómo estás?", "ana@example.com", "100 @@ once", "{{ x }}", ""]:
        compiled = compile_text(text)
        assert compiled.is_static
        assert compiled._template is None
        assert compiled.names == frozenset()
    assert compile_text("a @@ b").render({}) == "a @ b"
    assert not compile_text("@contact.name").is_static
    assert not compile_text('@("")').is_static


def test_names_lists_the_references_used() -> None:
    compiled = compile_text(
        "@contact.first_name @fields.order_id @(upper(results.age.category) & webhook.a.0)"
        " @@fields.ignored ana@example.com"
    )
    assert compiled.names == frozenset(
        {"contact.first_name", "fields.order_id", "results.age.category", "webhook.a.0"}
    )
