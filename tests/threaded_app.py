"""An aiohttp application served on 127.0.0.1 (a free port) from a thread of the test
process."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ThreadedApp:
    """Serves ``app`` once started; ``url(path)`` addresses it."""

    def __init__(self, app: web.Application, what: str = "the test server"):
        self.app = app
        self.what = what
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> ThreadedApp:
        """Serve, and return self."""
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"{self.what} did not start")
        return self

    def url(self, path: str = "") -> str:
        """The URL of ``path`` on the server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._runner = web.AppRunner(self.app)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        loop.run_forever()
        loop.close()
