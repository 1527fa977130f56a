"""What every Studio page shares when it answers: the layout's context (the user, the language,
the CSRF field, the menu, the message left by the last action), full pages and fragments, forms
and post/redirect/get."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup, escape
from multidict import MultiDictProxy

from bot.api.context import runtime, store
from bot.api.studio.auth import SIGNIN_CSRF, USER, User
from bot.api.studio.i18n import language, translator

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]
NAV_KEY = web.AppKey("studio_nav", list)  # [(path, English label)], set by studio_app
LANG = web.RequestKey("studio_lang", str)


def user(request: web.Request) -> User:
    """The signed-in user (the sign-in middleware ran: every page but sign-in has one)."""
    found: User = request[USER]
    return found


def lang(request: web.Request) -> str:
    if LANG not in request:
        setting = runtime(request).config.studio.language
        request[LANG] = language(setting, request.headers.get("Accept-Language", ""))
    chosen: str = request[LANG]
    return chosen


def context(request: web.Request, **extra: Any) -> dict[str, Any]:
    """The names every template may use, plus the page's own."""
    who: User | None = request.get(USER)
    csrf = who.csrf if who else request.get(SIGNIN_CSRF, "")
    flash = who.flash if who else ""
    kind, _, message = flash.partition(":")
    return {
        "_": translator(lang(request)),
        "lang": lang(request),
        "user": who,
        "can_write": bool(who and who.can_write),
        "csrf": csrf,
        "csrf_field": Markup('<input type="hidden" name="csrf" value="{}">').format(csrf),
        "notice": message,
        "notice_kind": kind,
        "nav": request.config_dict.get(NAV_KEY, []),
        "path": request.path,
        **extra,
    }


async def page(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    """A whole page in the layout; the last action's message is shown on it, once."""
    response = aiohttp_jinja2.render_template(
        template, request, context(request, **ctx), status=status
    )
    who: User | None = request.get(USER)
    if who is not None and who.flash:
        await store(request).clear_flash(who.session)
    return response


def fragment(request: web.Request, template: str, **ctx: Any) -> web.Response:
    """A piece of a page (a table, a progress bar) for ``data-live``/``data-search``: no layout,
    never cached, and it leaves the flash message for the next whole page."""
    response = aiohttp_jinja2.render_template(template, request, context(request, **ctx))
    response.headers["Cache-Control"] = "no-store"
    return response


async def form(request: web.Request) -> Form:
    """A POSTed form; the sign-in, CSRF and role checks already passed."""
    return await request.post()


def field(values: Form, name: str, default: str = "") -> str:
    """One text field of a form, trimmed ('' when absent or a file)."""
    value = values.get(name, default)
    return value.strip() if isinstance(value, str) else default


async def redirect(
    request: web.Request, path: str, notice: str = "", error: str = ""
) -> web.HTTPSeeOther:
    """Post/redirect/get: go to ``path`` and show ``notice`` (or ``error``) there once. Returned
    for the handler to raise."""
    who: User | None = request.get(USER)
    if who is not None and (notice or error):
        await store(request).set_flash(who.session, f"error:{error}" if error else f"ok:{notice}")
    return web.HTTPSeeOther(location=path)


def highlight(text: str, needle: str) -> Markup:
    """``text`` escaped, with ``needle`` (case-insensitive) wrapped in <mark>: search results."""
    if not needle:
        return escape(text)
    at = text.lower().find(needle.lower())
    if at < 0:
        return escape(text)
    end = at + len(needle)
    return escape(text[:at]) + Markup("<mark>{}</mark>").format(text[at:end]) + escape(text[end:])
