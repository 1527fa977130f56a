"""Studio's aiohttp app, mounted at ``/studio/`` by :func:`bot.api.app.create_app`: templates
(autoescaped), the static files, sign-in and sign-out, the checks every request passes, the page
modules, and the pages channels add (the WhatsApp sandbox's phone)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.api.context import runtime, store
from bot.api.studio import auth
from bot.api.studio.pages import contacts, flows, home, send, starts, templates
from bot.api.studio.render import NAV_KEY, field, form, page, redirect
from bot.core.errors import ApiError
from channels.protocol import STUDIO_CAN_WRITE, STUDIO_CSRF, StudioPage

log = logging.getLogger("chasqui.studio")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The page modules: each has ``routes`` (a web.RouteTableDef), its templates in templates/<area>/.
PAGE_MODULES = [home, flows, send, starts, contacts, templates]

# The menu, in order: (path, English label). A page module's entry is listed here.
NAV: list[tuple[str, str]] = [
    ("/studio/", "Home"),
    ("/studio/flows", "Flows"),
    ("/studio/send", "Send flow"),
    ("/studio/starts", "Starts"),
    ("/studio/contacts", "Contacts"),
    ("/studio/templates", "Templates"),
]

OPEN_PATHS = ("/studio/signin", "/studio/static/")


def _safe_next(value: str) -> str:
    """Where to go after signing in: a Studio path only (never another site)."""
    if value.startswith("/studio/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/studio/"


async def signin_page(request: web.Request) -> web.StreamResponse:
    return await _signin_form(request, request.query.get("next", ""), error="")


async def _signin_form(request: web.Request, after: str, error: str) -> web.StreamResponse:
    """The sign-in form, again with ``error`` when a try failed. Answered 200 even then: it is
    the form, shown again (a 4xx document would also be logged as a console error)."""
    token = request.cookies.get(auth.SIGNIN_COOKIE) or uuid.uuid4().hex
    request[auth.SIGNIN_CSRF] = token
    response = await page(
        request,
        "signin.html",
        error=error,
        next=_safe_next(after),
    )
    auth.set_cookie(request, response, auth.SIGNIN_COOKIE, token)
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    values = await form(request)
    expected = request.cookies.get(auth.SIGNIN_COOKIE, "")
    after = field(values, "next")
    if not auth.csrf_ok(field(values, "csrf"), expected):
        return await _signin_form(request, after, "The form expired; try again.")
    token = field(values, "token")
    found = auth.match_token(token, auth.admin_token(request), runtime(request).config.studio)
    if found is None:
        log.info("studio: a sign-in with a wrong token from %s", request.remote)
        return await _signin_form(request, after, "That token is not right.")
    sid = await auth.open_session(request, *found, token)
    response = web.HTTPSeeOther(location=_safe_next(after))
    auth.set_cookie(request, response, auth.COOKIE, sid)
    response.del_cookie(auth.SIGNIN_COOKIE, path="/")
    raise response


async def signout(request: web.Request) -> web.StreamResponse:
    await store(request).drop_session(request[auth.USER].session)
    response = web.HTTPSeeOther(location="/studio/signin")
    response.del_cookie(auth.COOKIE, path="/")
    raise response


@web.middleware
async def studio_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sign-in, CSRF and role checks, and failures as pages (never a JSON body, never a 500
    page without a reference in the log)."""
    try:
        if not request.path.startswith(OPEN_PATHS):
            await _check(request)
        return await handler(request)
    except ApiError as exc:
        return await _failed(request, exc)
    except web.HTTPNotFound:
        return await _failed(request, ApiError(404, "not_found", "There is no such page."))
    except web.HTTPMethodNotAllowed:
        return await _failed(request, ApiError(405, "method_not_allowed", "Not allowed here."))
    except web.HTTPException:
        raise
    except (RedisConnectionError, RedisTimeoutError):
        log.warning("studio: Redis unavailable on %s %s", request.method, request.path)
        error = ApiError(503, "redis_unavailable", "The data store is unavailable; retry shortly.")
        return await _error_page(request, error)
    except Exception:
        ref = uuid.uuid4().hex[:12]
        log.exception("studio: internal error %s on %s %s", ref, request.method, request.path)
        error = ApiError(500, "internal", f"Something broke on our side (reference {ref}).")
        return await _error_page(request, error)


async def _check(request: web.Request) -> None:
    user = await auth.signed_in(request)
    if user is None:
        if request.method == "GET" and not request.headers.get("X-Studio-Fragment"):
            raise web.HTTPSeeOther(location="/studio/signin?next=" + quote(request.path_qs))
        raise ApiError(401, "signed_out", "Your session ended; sign in again.")
    request[auth.USER] = user
    request[STUDIO_CSRF] = user.csrf
    request[STUDIO_CAN_WRITE] = user.can_write
    if request.method in ("GET", "HEAD"):
        return
    if not auth.csrf_ok(await auth.csrf_given(request), user.csrf):
        raise ApiError(403, "csrf", "The form expired or came from elsewhere; reload and retry.")
    if not user.can_write and request.path != "/studio/signout":
        raise ApiError(403, "read_only", "You are signed in read-only: you cannot change this.")


async def _failed(request: web.Request, error: ApiError) -> web.StreamResponse:
    """A refused action goes back where it came from with the reason; a page shows it."""
    referer = request.headers.get("Referer", "")
    back = referer.split(request.host, 1)[-1] if request.host in referer else ""
    goes_back = request.method == "POST" and back.startswith("/studio/") and error.status < 500
    if goes_back and request.get(auth.USER) is not None:
        raise await redirect(request, back, error=error.message)
    return await _error_page(request, error)


async def _error_page(request: web.Request, error: ApiError) -> web.StreamResponse:
    try:
        return await page(request, "error.html", status=error.status, error=error)
    except (RedisConnectionError, RedisTimeoutError):
        return web.Response(status=error.status, text=error.message)


def studio_app(channel_pages: Sequence[tuple[str, StudioPage]] = ()) -> web.Application:
    """The Studio app; ``channel_pages`` are (channel name, page) the channels offer."""
    app = web.Application(middlewares=[studio_middleware])
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("bot.api.studio", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
    static = resources.files("bot.api.studio").joinpath("static")
    app.router.add_static("/static/", str(static), append_version=False)
    for module in PAGE_MODULES:
        app.router.add_routes(module.routes)
    nav = list(NAV)
    for channel, studio_page in channel_pages:
        prefix = f"/channels/{channel}/{studio_page.path.strip('/')}/"
        app.add_subapp(prefix, studio_page.app)
        nav.append(("/studio" + prefix, studio_page.label))
    app[NAV_KEY] = nav
    return app
