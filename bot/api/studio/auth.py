"""Who is signed in to Studio, and the checks every Studio request passes.

A sign-in takes the admin token (user ``admin``, full) or a named token from ``[studio.tokens]``
(read or full). The session lives in Redis (:mod:`bot.store.sessions`) under a random id; the
browser holds only that id, in an HttpOnly, SameSite=Strict cookie. Every POST carries the
session's CSRF token (form field ``csrf``, header ``X-CSRF-Token`` or, for file uploads that a
page reads as a stream, ``?csrf=`` in the form's action), compared in constant time; a read-only
user's POSTs are refused, except signing out."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from bot.api.context import TOKEN, runtime, store
from bot.core.config import StudioConfig
from bot.core.durations import parse_duration

COOKIE = "chasqui_session"
SIGNIN_COOKIE = "chasqui_signin"  # the sign-in form's own CSRF token (no session yet)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str  # "read" | "full"
    csrf: str
    session: str
    flash: str = ""  # the message the last action left for this page ("ok:..."/"error:...")

    @property
    def can_write(self) -> bool:
        return self.role == "full"


USER = web.RequestKey("studio_user", User)  # the signed-in user, set by the middleware
SIGNIN_CSRF = web.RequestKey("studio_signin_csrf", str)  # the sign-in form's token


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def match_token(given: str, admin_token: str, studio: StudioConfig) -> tuple[str, str] | None:
    """``(user, role)`` for a sign-in token, or None. Every token is compared, in constant time
    each, so the time taken does not tell which one nearly matched."""
    found: tuple[str, str] | None = None
    if _same(given, admin_token):
        found = ("admin", "full")
    for name, named in studio.tokens.items():
        if _same(given, named.token.get_secret_value()) and found is None:
            found = (name, named.role)
    return found


def idle_seconds(request: web.Request) -> int:
    return parse_duration(runtime(request).config.studio.session_idle)


def _secure(request: web.Request) -> bool:
    return runtime(request).config.server.url.startswith("https://")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        max_age=idle_seconds(request) if name == COOKIE else 3600,
    )


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


async def open_session(request: web.Request, user: str, role: str, token: str) -> str:
    sid = secrets.token_urlsafe(32)
    fields = {
        "user": user,
        "role": role,
        "csrf": secrets.token_urlsafe(32),
        "token": _fingerprint(token),
    }
    await store(request).create_session(sid, fields, idle_seconds(request))
    return sid


async def signed_in(request: web.Request) -> User | None:
    sid = request.cookies.get(COOKIE, "")
    if not sid:
        return None
    found = await store(request).session(sid, idle_seconds(request))
    if found is None or not _still_allowed(request, found):
        return None
    return User(found["user"], found["role"], found["csrf"], sid, found.get("flash", ""))


def _still_allowed(request: web.Request, session: dict[str, str]) -> bool:
    """A session lasts only while the token it signed in with is still configured, with the
    same role: taking a name out of config.toml, or changing a token, ends its sessions."""
    user = session.get("user", "")
    if user == "admin":
        token, role = admin_token(request), "full"
    else:
        named = runtime(request).config.studio.tokens.get(user)
        if named is None:
            return False
        token, role = named.token.get_secret_value(), named.role
    return role == session.get("role") and _same(session.get("token", ""), _fingerprint(token))


async def csrf_given(request: web.Request) -> str:
    """The CSRF token a POST carries: header, ``?csrf=``, or the form's field."""
    given = request.headers.get("X-CSRF-Token") or request.query.get("csrf", "")
    if given:
        return given
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get("csrf", "")
        return value if isinstance(value, str) else ""
    return ""


def csrf_ok(given: str, expected: str) -> bool:
    return _same(given, expected)


def admin_token(request: web.Request) -> str:
    return request.config_dict[TOKEN]
