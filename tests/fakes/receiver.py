"""An organisation's webhook receiver on 127.0.0.1: verifies each delivery with
the `standardwebhooks` package itself, records what it got, answers 204 (or
what a test scripts with ``fail_next``)."""

from __future__ import annotations

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from .base import FakeServer


class FakeReceiver(FakeServer):
    path = "/hooks/myrobot"

    def reset_state(self) -> None:
        self.secret: str | None = None
        self.verified: list[dict] = []  # {"id", "timestamp", "event"} of deliveries that verified
        self.rejected: list[str] = []

    @property
    def hook_url(self) -> str:
        return self.url + self.path

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = Webhook(self.secret).verify(body, dict(request.headers))
        except (WebhookVerificationError, TypeError, ValueError) as exc:
            self.rejected.append(str(exc))
            return web.json_response({"error": "bad signature"}, status=400)
        self.verified.append(
            {"id": request.headers["webhook-id"], "timestamp": request.headers["webhook-timestamp"], "event": event}
        )
        return web.Response(status=204)
