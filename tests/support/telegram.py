"""A local stand-in of the Telegram Bot API, for tests and the bench: it answers like Telegram,
records every call, delivers updates to the registered webhook, and fails on demand.

- ``POST /bot<token>/<method>``: ``setWebhook``, ``getWebhookInfo``, ``deleteWebhook``,
  ``getMe``, ``sendMessage``, ``sendPhoto``, ``sendDocument``, ``sendVideo``, ``sendAudio``,
  ``answerCallbackQuery``, ``getFile``; ``GET /file/bot<token>/<path>`` downloads a file. A
  wrong token is ``401 Unauthorized``, an unknown method ``404 Not Found``, a body Telegram
  would refuse ``400 Bad Request: ...`` (empty text, callback_data over 64 bytes, ...).
- :meth:`TelegramStandIn.fail` queues error answers (403, 429 with ``retry_after``, 500, ...);
  a chat in ``blocked`` always gets ``403 Forbidden: bot was blocked by the user``.
- :meth:`TelegramStandIn.text`, :meth:`~TelegramStandIn.tap`, ... post updates to the webhook
  that ``setWebhook`` registered, with its secret header, as Telegram does; a tap carries the
  message it was on, keyboard included.
- ``GET /_fake/calls`` lists the recorded calls (the bench reads them from another process).

Run alone: ``python -m tests.support.telegram --port 8095 --token 123:abc``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

SEND_METHODS = ("sendMessage", "sendPhoto", "sendDocument", "sendVideo", "sendAudio")
MEDIA_FIELDS = {"sendPhoto": "photo", "sendDocument": "document", "sendVideo": "video"}
MEDIA_FIELDS["sendAudio"] = "audio"
BOT_USER = {"id": 0, "is_bot": True, "first_name": "Chasqui", "username": "chasqui_test_bot"}
BLOCKED = "Forbidden: bot was blocked by the user"


@dataclass
class Failure:
    """An error answer for the next ``times`` calls of ``method`` (None: any send method)."""

    status: int
    description: str
    method: str | None = None
    retry_after: int | None = None
    times: int = 1
    hang: float = 0.0  # seconds before answering (longer than the client waits: a timeout)


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    at: float
    status: int = 200
    result: Any = None


@dataclass
class TelegramStandIn:
    token: str
    calls: list[Call] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    webhook: dict[str, Any] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # file id -> path, bytes
    record: bool = True  # False: count calls only (the bench's long runs)
    count: int = 0
    _updates: itertools.count[int] = field(default_factory=lambda: itertools.count(730114001))
    _message_ids: dict[int, itertools.count[int]] = field(default_factory=dict)
    _messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    _http: aiohttp.ClientSession | None = None

    @property
    def bot_id(self) -> int:
        return int(self.token.split(":", 1)[0])

    # -- the app ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        app.router.add_get("/_fake/calls", self._calls)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _: web.Application) -> None:
        if self._http is not None:
            await self._http.close()

    async def _method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return _error(400, "Bad Request: can't parse JSON object")
        if not isinstance(body, dict):
            return _error(400, "Bad Request: the body is not a JSON object")
        self.count += 1
        call = Call(method, body, time.time())
        if self.record:
            self.calls.append(call)
        status, answer, hang = self._answer(method, body)
        if hang:
            await asyncio.sleep(hang)
        call.status, call.result = status, answer.get("result")
        return web.json_response(answer, status=status)

    def _answer(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        handler = getattr(self, f"_do_{method}", None)
        if handler is None:
            return 404, _body(404, "Not Found"), 0.0
        failure = self._injected(method)
        if failure is not None:
            params = {"retry_after": failure.retry_after} if failure.retry_after else None
            answer = _body(failure.status, failure.description, params)
            return failure.status, answer, failure.hang
        if method in SEND_METHODS and body.get("chat_id") in self.blocked:
            return 403, _body(403, BLOCKED), 0.0
        try:
            result = handler(body)
        except BadRequest as exc:
            return 400, _body(400, f"Bad Request: {exc}"), 0.0
        return 200, {"ok": True, "result": result}, 0.0

    def _injected(self, method: str) -> Failure | None:
        for failure in self.failures:
            if failure.method == method or (failure.method is None and method in SEND_METHODS):
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
                return failure
        return None

    # -- methods ------------------------------------------------------------------------------
    def _do_getMe(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**BOT_USER, "id": self.bot_id}

    def _do_setWebhook(self, body: dict[str, Any]) -> bool:
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise BadRequest("bad webhook: an HTTPS URL must be provided for webhook")
        self.webhook = dict(body)
        return True

    def _do_deleteWebhook(self, body: dict[str, Any]) -> bool:
        self.webhook = {}
        return True

    def _do_getWebhookInfo(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook.get("url", ""), "pending_update_count": 0}

    def _do_answerCallbackQuery(self, body: dict[str, Any]) -> bool:
        if not isinstance(body.get("callback_query_id"), str):
            raise BadRequest("query is too old and response timeout expired or query ID is invalid")
        return True

    def _do_getFile(self, body: dict[str, Any]) -> dict[str, Any]:
        file_id = body.get("file_id")
        if file_id not in self.files:
            raise BadRequest("invalid file_id")
        path, content = self.files[file_id]
        return {"file_id": file_id, "file_size": len(content), "file_path": path}

    def _sent(self, body: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = body.get("chat_id")
        if not isinstance(chat_id, int):
            raise BadRequest("chat not found")
        markup = body.get("reply_markup")
        if markup is not None:
            _check_keyboard(markup)
        ids = self._message_ids.setdefault(chat_id, itertools.count(1))
        message = {
            "message_id": next(ids),
            "from": {**BOT_USER, "id": self.bot_id},
            "chat": {"id": chat_id, "type": "private"},
            "date": int(time.time()),
            **content,
        }
        if markup is not None:
            message["reply_markup"] = markup
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _do_sendMessage(self, body: dict[str, Any]) -> dict[str, Any]:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("message text is empty")
        if len(text) > 4096:
            raise BadRequest("message is too long")
        return self._sent(body, text=text)

    def _media(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        key = MEDIA_FIELDS[method]
        if not isinstance(body.get(key), str):
            raise BadRequest(f"there is no {key} in the request")
        caption = body.get("caption")
        if isinstance(caption, str) and len(caption) > 1024:
            raise BadRequest("message caption is too long")
        content: dict[str, Any] = {key: {"file_id": f"F{key}{len(self.calls)}"}}
        if caption:
            content["caption"] = caption
        return self._sent(body, **content)

    def _do_sendPhoto(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._media("sendPhoto", body)

    def _do_sendDocument(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._media("sendDocument", body)

    def _do_sendVideo(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._media("sendVideo", body)

    def _do_sendAudio(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._media("sendAudio", body)

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        for path, content in self.files.values():
            if path == request.match_info["path"]:
                return web.Response(body=content)
        return _error(404, "Not Found")

    async def _calls(self, request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        data = [
            {"method": c.method, "body": c.body, "at": c.at, "status": c.status}
            for c in self.calls
            if c.at >= since
        ]
        return web.json_response({"count": self.count, "data": data})

    # -- what tests read and do ---------------------------------------------------------------
    def fail(
        self,
        status: int,
        description: str,
        *,
        method: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        hang: float = 0.0,
    ) -> None:
        self.failures.append(Failure(status, description, method, retry_after, times, hang))

    def sent(self, method: str | None = None) -> list[dict[str, Any]]:
        """Bodies of the calls Telegram accepted, of ``method`` (None: any send method)."""
        return [
            c.body
            for c in self.calls
            if c.status == 200
            and (c.method == method or (method is None and c.method in SEND_METHODS))
        ]

    def texts(self) -> list[str]:
        return [str(b.get("text") or b.get("caption") or "") for b in self.sent()]

    def tried(self, method: str) -> list[Call]:
        """Every call of ``method``, whatever Telegram answered."""
        return [c for c in self.calls if c.method == method]

    async def deliver(self, update: dict[str, Any], secret: str | None = None) -> int:
        """POST one update to the registered webhook, as Telegram does; the HTTP status."""
        url = self.webhook.get("url")
        assert url, "no webhook registered (setWebhook)"
        token = self.webhook.get("secret_token") if secret is None else secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token else {}
        if self._http is None:
            self._http = aiohttp.ClientSession()
        async with self._http.post(url, json=update, headers=headers) as response:
            await response.read()
            return response.status

    def update(self, **payload: Any) -> dict[str, Any]:
        return {"update_id": next(self._updates), **payload}

    def message(self, chat_id: int, name: str = "Ana", **content: Any) -> dict[str, Any]:
        """An update with a user's message (text=..., photo=[...], location={...}, ...)."""
        user = {"id": chat_id, "is_bot": False, "first_name": name, "language_code": "es"}
        ids = self._message_ids.setdefault(chat_id, itertools.count(1))
        return self.update(
            message={
                "message_id": next(ids),
                "from": user,
                "chat": {"id": chat_id, "type": "private", "first_name": name},
                "date": int(time.time()),
                **content,
            }
        )

    async def text(self, chat_id: int, text: str, name: str = "Ana") -> int:
        return await self.deliver(self.message(chat_id, name, text=text))

    def tap_update(self, chat_id: int, title: str, name: str = "Ana") -> dict[str, Any]:
        """A tap on the button titled ``title`` of the last message to ``chat_id`` that has one."""
        for (chat, _), message in sorted(self._messages.items(), reverse=True):
            rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
            for button in (b for row in rows for b in row):
                if chat == chat_id and button["text"] == title:
                    return self.update(
                        callback_query={
                            "id": f"44102938475612{len(self.calls):05d}",
                            "from": {"id": chat_id, "is_bot": False, "first_name": name},
                            "message": message,
                            "chat_instance": "-112233445566778899",
                            "data": button["callback_data"],
                        }
                    )
        raise AssertionError(f"no button {title!r} sent to {chat_id}")

    async def tap(self, chat_id: int, title: str, name: str = "Ana") -> int:
        return await self.deliver(self.tap_update(chat_id, title, name))


class BadRequest(Exception):
    pass


def _check_keyboard(markup: Any) -> None:
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise BadRequest('field "inline_keyboard" of the InlineKeyboardMarkup should be an Array')
    for button in (b for row in rows for b in row):
        if not isinstance(button, dict) or not str(button.get("text") or "").strip():
            raise BadRequest("text buttons are unallowed in the inline keyboard")
        data = button.get("callback_data")
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
            raise BadRequest("BUTTON_DATA_INVALID")


def _body(code: int, description: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        out["parameters"] = parameters
    return out


def _error(code: int, description: str) -> web.Response:
    return web.json_response(_body(code, description), status=code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument("--token", required=True)
    parser.add_argument("--no-record", action="store_true", help="count calls, keep none")
    args = parser.parse_args()
    stand_in = TelegramStandIn(args.token, record=not args.no_record)
    web.run_app(stand_in.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
