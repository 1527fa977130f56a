"""Studio's sign-in, sessions, CSRF, roles, languages and error pages, over real HTTP on the app
``chasqui serve`` runs (docs/studio.md, "Signing in")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from yarl import URL

from bot.api.studio.i18n import LANGUAGES, catalog, conflicts, language
from bot.core.config import ConfigError, load_config
from tests.support.api import GREETING, MakeApi
from tests.support.studio import Studio, csrf_of

READER = "reader-token-0123456789"
EDITOR = "editor-token-0123456789"
NAMED = {"tokens": {"rosa": {"token": READER}, "tomas": {"token": EDITOR, "role": "full"}}}


async def _studio(make_api: MakeApi, **studio: object) -> Studio:
    return Studio(await make_api({"greeting": GREETING}, studio={**NAMED, **studio}))


async def test_a_page_sends_a_stranger_to_sign_in_and_back(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    async with pages.client.get("/studio/contacts?q=ana", allow_redirects=False) as resp:
        assert resp.status == 303
        location = URL(resp.headers["Location"])
        assert location.path == "/studio/signin"
        assert location.query["next"] == "/studio/contacts?q=ana"
    async with pages.client.get("/", allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (302, "/studio/")


async def test_the_session_cookie_is_httponly_and_strict(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    _, html = await pages.get("/studio/signin")
    async with pages.client.post(
        "/studio/signin",
        data={"csrf": csrf_of(html), "token": EDITOR, "next": "/studio/starts"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/studio/starts"
        cookie = resp.cookies["chasqui_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert EDITOR not in cookie.value


async def test_a_wrong_token_or_a_forged_form_does_not_sign_in(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    assert await pages.sign_in("not-the-token") == 200  # the form again, with the reason
    _, html = await pages.get("/studio/signin")
    assert "That token is not right." not in html
    async with pages.client.post(
        "/studio/signin", data={"csrf": "forged", "token": EDITOR}, allow_redirects=False
    ) as resp:
        assert resp.status == 200
        assert "The form expired; try again." in await resp.text()
        assert "chasqui_session" not in resp.cookies
    status, _ = await pages.get("/studio/")
    assert status == 303


async def test_an_offsite_next_goes_home_instead(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    _, html = await pages.get("/studio/signin?next=//evil.example/x")
    assert 'value="/studio/"' in html
    for target in ("https://evil.example/", "//evil.example/", "/studio/\\evil"):
        _, html = await pages.get("/studio/signin")
        async with pages.client.post(
            "/studio/signin",
            data={"csrf": csrf_of(html), "token": EDITOR, "next": target},
            allow_redirects=False,
        ) as resp:
            assert resp.headers["Location"] == "/studio/"


async def test_a_post_without_the_session_csrf_is_refused(studio: Studio) -> None:
    status, _, html = await studio.post("/studio/signout", csrf=False)
    assert status == 403
    assert "The form expired or came from elsewhere" in html
    status, _ = await studio.get("/studio/")
    assert status == 200, "a refused sign-out leaves the session alone"


async def test_signing_out_ends_the_session_on_the_server(studio: Studio) -> None:
    cookie = studio.client.session.cookie_jar.filter_cookies(studio.client.make_url("/"))
    sid = cookie["chasqui_session"].value
    status, location, _ = await studio.post("/studio/signout")
    assert (status, location) == (303, "/studio/signin")
    assert await studio.api.store.session(sid, 60) is None
    # the old cookie, replayed, opens nothing
    async with studio.client.get(
        "/studio/", cookies={"chasqui_session": sid}, allow_redirects=False
    ) as resp:
        assert resp.status == 303


async def test_a_read_only_user_sees_pages_but_changes_nothing(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    assert await pages.sign_in(READER) == 303
    status, html = await pages.get("/studio/")
    assert status == 200 and "rosa" in html and "read only" in html
    status, _, html = await pages.post("/studio/anything")
    assert status == 403 and "read-only" in html
    status, location, _ = await pages.post("/studio/signout")
    assert (status, location) == (303, "/studio/signin")


async def test_taking_a_name_out_of_the_config_ends_its_sessions(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    assert await pages.sign_in(EDITOR) == 303
    del pages.api.runtime.config.studio.tokens["tomas"]
    status, _ = await pages.get("/studio/")
    assert status == 303


async def test_pages_follow_the_browser_language_or_the_setting(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    assert await pages.sign_in() == 303
    _, html = await pages.get("/studio/", headers={"Accept-Language": "es-PE,es;q=0.9,en;q=0.5"})
    assert "Inicio" in html and 'lang="es"' in html
    _, html = await pages.get("/studio/", headers={"Accept-Language": "de, en;q=0.4"})
    assert ">Home<" in html
    fixed = await _studio(make_api, language="pt")
    assert await fixed.sign_in() == 303
    _, html = await fixed.get("/studio/", headers={"Accept-Language": "es"})
    assert "Início" in html


def test_language_negotiation() -> None:
    assert language("auto", "") == "en"
    assert language("auto", "fr;q=1, pt-BR;q=0.8, es;q=0.9") == "es"
    assert language("auto", "es;q=0, pt") == "pt"
    assert language("auto", "es;q=abc, en") == "en"
    assert language("es", "pt") == "es"


async def test_an_unknown_page_is_a_page_not_a_json_error(studio: Studio) -> None:
    status, html = await studio.get("/studio/no-such-page")
    assert status == 404
    assert "<html" in html and "There is no such page." in html


async def test_static_files_are_served_without_a_session(make_api: MakeApi) -> None:
    pages = await _studio(make_api)
    for name in ("studio.css", "studio.js"):
        status, body = await pages.get(f"/studio/static/{name}")
        assert status == 200 and len(body) > 500


LABEL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
STUDIO = Path(__file__).parent.parent / "bot" / "api" / "studio"


def test_every_label_has_its_spanish() -> None:
    """A label written in English in a template or a page, and missing from locale/es, would
    show in English to a Spanish reader."""
    spanish = catalog("es")
    missing = []
    for path in sorted([*STUDIO.rglob("*.html"), *STUDIO.rglob("*.py")]):
        for match in LABEL.finditer(path.read_text(encoding="utf-8")):
            label = match.group(1) if match.group(1) is not None else match.group(2)
            if label not in spanish:
                missing.append(f"{path.relative_to(STUDIO)}: {label!r}")
    assert not missing, "\n".join(missing)


def test_a_named_token_cannot_take_the_admins_name(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[studio.tokens.admin]\ntoken = "x"\n')
    with pytest.raises(ConfigError, match="admin"):
        load_config(tmp_path / "config.toml")


def test_no_label_is_translated_two_ways() -> None:
    """Two page authors translating one English label differently would show one of them on
    the other's page."""
    assert [found for lang in LANGUAGES for found in conflicts(lang)] == []
