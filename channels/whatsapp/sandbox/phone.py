"""The sandbox phone: a page where you are the contact of a sandbox WhatsApp number.

Pick (or type) a number, read what the bot sent it — templates with their header, body with the
variables filled, footer and buttons; interactive buttons and lists; text — and reply by typing
or tapping a button. A reply is what ``POST /_fake/inbound`` does: a message built and signed
exactly as Meta would post it (:func:`controls.play_user`). The ticks follow the statuses the
sandbox posts; a chat can hold its reads back and mark them read by hand.

It is a small aiohttp app sharing the sandbox's state, offered to Studio through the channel
protocol (``WhatsAppChannel.studio_pages``): Studio mounts it behind its sign-in, and its CSRF
and read-only checks run before these handlers (a parent app's middlewares run for its
sub-apps). Served anywhere else, it refuses every request. Its own templates are autoescaped;
live updates poll a fragment (``phone.js``, no build step).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from channels.protocol import STUDIO_CAN_WRITE, STUDIO_CSRF
from channels.whatsapp.sandbox.chats import Chat
from channels.whatsapp.sandbox.context import SANDBOX_DISPATCHER, SANDBOX_STATE, state_of
from channels.whatsapp.sandbox.controls import FakeError, play_user
from channels.whatsapp.sandbox.webhooks import StatusEvent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENV = web.AppKey("phone_templates", jinja2.Environment)
STATIC = ("phone.css", "phone.js")
MAX_TEXT = 4096
LISTED = 30  # the most recent chats listed; any other is opened by typing its number

# The phone's own labels in Spanish and Portuguese (English is the key); the browser chooses.
WORDS: dict[str, dict[str, str]] = {
    "es": {
        "Sandbox phone": "Teléfono de prueba",
        "You are the contact: pick a number, read what the bot sent, reply.": (
            "Tú eres el contacto: elige un número, lee lo que envió el bot, responde."
        ),
        "Number": "Número",
        "Name (optional)": "Nombre (opcional)",
        "Open chat": "Abrir chat",
        "Chats": "Chats",
        "more chats: type a number to open one.": "chats más: escribe un número para abrir uno.",
        "No chat yet: send a flow to a contact, or open a number and write first.": (
            "Aún no hay chats: envía un flujo a un contacto, o abre un número y escribe primero."
        ),
        "Back": "Volver",
        "Message": "Mensaje",
        "Send": "Enviar",
        "Mark as read": "Marcar como leído",
        "Read automatically": "Leer automáticamente",
        "Hold reads": "Retener lecturas",
        "Nothing here yet.": "Nada todavía.",
        "sent": "enviado",
        "delivered": "entregado",
        "read": "leído",
        "failed": "falló",
        "sending": "enviando",
        "Signed in read-only: you cannot reply.": "Sesión de solo lectura: no puedes responder.",
        "Back to Studio": "Volver a Studio",
        "Template": "Plantilla",
        "Write a message first.": "Escribe un mensaje primero.",
        "That is not a phone number.": "Eso no es un número de teléfono.",
    },
    "pt": {
        "Sandbox phone": "Telefone de teste",
        "You are the contact: pick a number, read what the bot sent, reply.": (
            "Você é o contato: escolha um número, leia o que o bot enviou, responda."
        ),
        "Number": "Número",
        "Name (optional)": "Nome (opcional)",
        "Open chat": "Abrir conversa",
        "Chats": "Conversas",
        "Back": "Voltar",
        "Message": "Mensagem",
        "Send": "Enviar",
        "Mark as read": "Marcar como lida",
        "sent": "enviada",
        "delivered": "entregue",
        "read": "lida",
        "failed": "falhou",
        "Back to Studio": "Voltar ao Studio",
    },
}


def language(accept: str) -> str:
    for part in accept.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in WORDS or code == "en":
            return code
    return "en"


def translator(lang: str) -> Callable[[str], str]:
    words = WORDS.get(lang, {})
    return lambda text: words.get(text, text)


def digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


# -- the app --------------------------------------------------------------------------------


@web.middleware
async def inside_studio(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse everything unless Studio's sign-in ran (it leaves the CSRF token on the request);
    changes need a user who may write."""
    if not request.get(STUDIO_CSRF):
        return web.Response(status=403, text="The sandbox phone is served inside Studio: sign in.")
    if request.method == "POST" and not request.get(STUDIO_CAN_WRITE):
        return web.Response(status=403, text="Signed in read-only: you cannot reply.")
    return await handler(request)


def create_phone_app(sandbox: web.Application) -> web.Application:
    """The phone for the sandbox app ``sandbox`` (the same state and webhook dispatcher)."""
    app = web.Application(middlewares=[inside_studio])
    app[SANDBOX_STATE] = sandbox[SANDBOX_STATE]
    app[SANDBOX_DISPATCHER] = sandbox[SANDBOX_DISPATCHER]
    app[ENV] = jinja2.Environment(
        loader=jinja2.PackageLoader("channels.whatsapp.sandbox", "phone_templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    r = app.router
    r.add_get("/", home, name="home")
    r.add_get("/live", chats_live, name="chats_live")
    r.add_get("/static/{file}", static, name="static")
    r.add_get("/chat/{user}", chat_page, name="chat")
    r.add_get("/chat/{user}/live", chat_live, name="chat_live")
    r.add_post("/chat/{user}/send", send_text, name="send")
    r.add_post("/chat/{user}/tap", tap, name="tap")
    r.add_post("/chat/{user}/read", mark_read, name="read")
    return app


# -- rendering --------------------------------------------------------------------------------


def _url(request: web.Request, name: str, **parts: str) -> str:
    return str(request.app.router[name].url_for(**parts))


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


def _render(request: web.Request, template: str, **ctx: Any) -> web.Response:
    state = state_of(request)
    number = state.config.numbers[0]
    env = request.app[ENV]
    lang = language(request.headers.get("Accept-Language", ""))
    html = env.get_template(template).render(
        _=translator(lang),
        lang=lang,
        csrf=request[STUDIO_CSRF],
        can_write=bool(request.get(STUDIO_CAN_WRITE)),
        url=lambda name, **parts: _url(request, name, **parts),
        clock=_clock,
        business=number.display_phone_number,
        notice=request.query.get("notice", ""),
        **ctx,
    )
    response = web.Response(text=html, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _number(request: web.Request) -> str:
    return state_of(request).config.numbers[0].phone_number_id


def _user(request: web.Request) -> str:
    user = request.match_info["user"]
    if not user or len(user) > 64 or not all(ch.isalnum() or ch in ".-_" for ch in user):
        raise web.HTTPNotFound()
    return user


def _chat(request: web.Request) -> Chat:
    """The chat with this user; an empty one (not remembered) when nothing was said yet."""
    state, user = state_of(request), _user(request)
    return state.chats.get(_number(request), user) or Chat(_number(request), user)


def _unchanged(request: web.Request, version: int) -> bool:
    return request.query.get("v") == str(version)


# -- pages ------------------------------------------------------------------------------------


async def home(request: web.Request) -> web.StreamResponse:
    """The chats, newest first, and a form to open any number."""
    wanted = request.query.get("number")
    if wanted is not None:
        user = digits(wanted)
        if not user:
            return _render(
                request, "home.html", **_chats(request), error="That is not a phone number."
            )
        location = _url(request, "chat", user=user)
        name = request.query.get("name", "").strip()[:100]
        raise web.HTTPSeeOther(location + (f"?name={_q(name)}" if name else ""))
    return _render(request, "home.html", **_chats(request), error="")


def _q(value: str) -> str:
    return quote(value, safe="")


def _chats(request: web.Request) -> dict[str, Any]:
    state = state_of(request)
    chats = state.chats.recent(_number(request), LISTED)
    more = max(0, state.chats.count(_number(request)) - len(chats))
    return {"chats": chats, "more": more, "version": state.chats.version}


async def chats_live(request: web.Request) -> web.StreamResponse:
    ctx = _chats(request)
    if _unchanged(request, ctx["version"]):
        return web.Response(status=204)
    return _render(request, "_chats.html", **ctx)


async def chat_page(request: web.Request) -> web.StreamResponse:
    chat = _chat(request)
    name = chat.name or request.query.get("name", "").strip()[:100]
    return _render(request, "chat.html", chat=chat, name=name)


async def chat_live(request: web.Request) -> web.StreamResponse:
    chat = _chat(request)
    if _unchanged(request, chat.version):
        return web.Response(status=204)
    return _render(request, "_bubbles.html", chat=chat)


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = resources.files("channels.whatsapp.sandbox").joinpath("phone_static", name)
    kind = "text/css" if name.endswith(".css") else "text/javascript"
    response = web.Response(body=body.read_bytes(), content_type=kind)
    response.headers["Cache-Control"] = "no-cache"
    return response


# -- what the contact does --------------------------------------------------------------------


async def _field(request: web.Request, name: str) -> str:
    value = (await request.post()).get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _back(request: web.Request, notice: str = "") -> web.HTTPSeeOther:
    location = _url(request, "chat", user=_user(request))
    return web.HTTPSeeOther(location + (f"?notice={_q(notice)}" if notice else ""))


async def _play(request: web.Request, spec: dict[str, Any]) -> web.HTTPSeeOther:
    """Post the user's message (signed, as Meta would) and go back to the chat."""
    chat = _chat(request)
    name = await _field(request, "name") or chat.name
    spec = {"from": _user(request), **({"name": name} if name else {}), **spec}
    try:
        await play_user(state_of(request), request.app[SANDBOX_DISPATCHER], [spec], chat.number)
    except FakeError as exc:
        return _back(request, str(exc))
    return _back(request)


async def send_text(request: web.Request) -> web.StreamResponse:
    text = (await _field(request, "text"))[:MAX_TEXT]
    if not text:
        raise _back(request, "Write a message first.")
    raise await _play(request, {"type": "text", "text": text})


async def tap(request: web.Request) -> web.StreamResponse:
    """A tap on a button (a template's quick reply) or an interactive reply or list row."""
    wamid = await _field(request, "wamid")
    kind, _, value = (await _field(request, "tap")).partition(":")
    if kind == "button" and value.isdigit():
        spec: dict[str, Any] = {"type": "button", "button_index": int(value)}
    elif kind == "interactive" and value:
        spec = {"type": "interactive", "interactive_id": value}
    else:
        raise _back(request, "That button cannot be tapped.")
    raise await _play(request, {**spec, "context_id": wamid or None})


async def mark_read(request: web.Request) -> web.StreamResponse:
    """Read every message of the bot not read yet (a ``read`` status each, posted now); with
    ``auto``, also say whether this chat reads the bot's messages by itself from now on."""
    state = state_of(request)
    chat = state.chats.chat(_number(request), _user(request))
    auto = await _field(request, "auto")
    if auto in ("on", "off"):
        chat.auto_read = auto == "on"
        state.chats.touch(chat)
    number = state.numbers[chat.number]
    for bubble in chat.unread():
        event = StatusEvent(
            number,
            bubble.wamid,
            "read",
            bubble.recipient_id,
            bubble.user_id,
            bubble.biz_opaque,
        )
        request.app[SANDBOX_DISPATCHER].schedule(0, ("status", event))
    raise _back(request)
