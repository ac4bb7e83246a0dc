"""The console in a browser: textual-serve starts one console process per browser session (its websocket), and
this module puts a guard in front of it.

The guard, on every request (page, websocket, static asset, any path): the Host header must be a plain host
name; a request that says where it comes from (`Origin`, which browsers send with every websocket) must come
from the page's own host; when serving without a token (loopback only) the Host must be a loopback name, so a
web page that rebinds its DNS name to 127.0.0.1 gets nothing; with a token, the request must carry it, as
`?token=` (the page's first request, answered with a cookie and a redirect that drops it from the address) or
as that HttpOnly, SameSite=Strict cookie. Anything else gets a bare 403. The only routes are the page, its
websocket and textual-serve's own static folder (no directory listing, no symlinks, no `/download`): nothing
else on disk is served. Runs started from a browser session are the engine's child processes in their own
session (`engine.launch`), so a closed tab, which ends its console process, never ends a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import shlex
import signal
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

log = logging.getLogger("console.serve")

TOKEN_PARAM = "token"
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
HOST_HEADER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",  # no other site may frame the console and steer clicks into it
    # the page loads and connects only to this server (its inline scripts and styles are textual-serve's own;
    # the web font it links from another site is not fetched: the terminal uses a local monospace font)
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",  # the first address holds the token
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    """Whether a bind address (or a Host header's name) can only be reached from this machine."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh access token (32 URL-safe characters, 192 random bits)."""
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """The token if it is usable in a URL and long enough to guess at; else ValueError."""
    if len(token) < MIN_TOKEN_LENGTH or not re.fullmatch(r"[A-Za-z0-9_.~-]+", token):
        raise ValueError(f"the token must be at least {MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 _ . ~ -")
    return token


def app_command(runs_root: Path, experiment: str) -> str:
    """The shell command textual-serve runs per browser session: this console on the same runs folder, with the
    Python that runs the server."""
    from engine.processes import safe_python  # a `presets/` folder where the server runs must not shadow ours

    console = [*safe_python(), "-m", "console.cli", "--runs-dir", str(runs_root), "--experiment", experiment]
    return "exec " + shlex.join(console)  # exec: the session's process is the console itself, not a shell


def browse_url(host: str, port: int, token: str | None) -> str:
    """The address to open (a wildcard bind is shown with this machine's name)."""
    shown = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    query = f"/?{urlencode({TOKEN_PARAM: token})}" if token else "/"
    return f"http://{shown}:{port}{query}"


class ConsoleServer(Server):
    """textual-serve's server with the guard in front, URLs taken from the request (so an SSH tunnel's local
    port works) and the routes cut down to the page, its websocket and the static assets."""

    def __init__(self, command: str, host: str, port: int, token: str | None) -> None:
        super().__init__(command, host=host, port=port, title="imgcls-console")
        self.token = token
        # per token, so two servers on one host (cookies ignore ports) do not overwrite each other's cookie
        self.cookie_name = "imgcls_console_" + hashlib.sha256((token or "").encode()).hexdigest()[:12]
        self.sockets: set[web.WebSocketResponse] = set()
        self.bound_port: int | None = None

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path), autoescape=True)
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws", self.handle_websocket, name="websocket"),
            web.static("/static", self.statics_path, show_index=False, follow_symlinks=False, name="static"),
        ])
        app.on_response_prepare.append(self._add_security_headers)
        app.on_shutdown.append(self._close_sockets)
        return app

    # --- the guard ---

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Refuse (bare 403) what fails a check; trade a good `?token=` on the page for a cookie."""
        refusal = self._refusal(request)
        if refusal is not None:
            log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, refusal)
            return web.Response(status=403, text="403: Forbidden")
        if self.token is not None and TOKEN_PARAM in request.query and request.path == "/":
            query = {k: v for k, v in request.query.items() if k != TOKEN_PARAM}
            response = web.Response(status=303, headers={"Location": "/" + (f"?{urlencode(query)}" if query else "")})
            response.set_cookie(self.cookie_name, self.token, httponly=True, samesite="Strict", path="/",
                                secure=request.secure)
            return response
        return await handler(request)

    def _refusal(self, request: web.Request) -> str | None:
        """Why a request is refused, or None."""
        host = request.headers.get("Host", "")
        if not HOST_HEADER.match(host):
            return "bad Host header"
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return "cross-origin"
        if self.token is None:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return None if is_loopback(name) else "not a loopback Host"
        given = request.query.get(TOKEN_PARAM) or request.cookies.get(self.cookie_name) or ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return "no token" if not given else "wrong token"
        return None

    async def _add_security_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)

    # --- the page and its websocket ---

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """The page, pointing at the websocket and static assets on the host the browser asked for."""
        websocket = ("wss" if request.secure else "ws") + f"://{request.host}/ws"
        return {"font_size": to_int(request.query.get("fontsize", "16"), 16), "app_websocket_url": websocket,
                "config": {"static": {"url": "/static/"}}, "application": {"name": self.title}}

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One console process for this browser session, ended (asked to quit) when the socket closes."""
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        service: AppService | None = None
        self.sockets.add(websocket)
        try:
            await websocket.prepare(request)
            service = AppService(self.command, write_bytes=websocket.send_bytes, write_str=websocket.send_str,
                                 close=websocket.close, download_manager=self.download_manager, debug=False)
            await service.start(width, height)
            await self._process_messages(websocket, service)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception:  # a malformed message from the browser: end this session, keep the server
            log.exception("session ended by an error")
        finally:
            self.sockets.discard(websocket)
            if service is not None:
                await service.stop()
        return websocket

    async def _close_sockets(self, app: web.Application) -> None:
        """On shutdown: close every session's socket, so each console process is asked to quit."""
        await asyncio.gather(*(ws.close(code=1001) for ws in list(self.sockets)), return_exceptions=True)

    # --- running ---

    def serve(self, debug: bool = False) -> None:
        """Serve until SIGINT/SIGTERM."""
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        runner = web.AppRunner(await self._make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            self.bound_port = runner.addresses[0][1]
            self._print_banner()
            await stop.wait()
        finally:
            await runner.cleanup()

    def _print_banner(self) -> None:
        port = self.bound_port or self.port
        print(f"imgcls-console: serving the console (one console process per browser tab) on port {port}",
              flush=True)
        print(f"open {browse_url(self.host, port, self.token)}", flush=True)
        if self.token is not None:
            print("every request must carry this token; anyone who has it can drive the console", flush=True)
        print("Ctrl+C stops the server (runs started from the browser go on)", flush=True)

    async def on_startup(self, app: web.Application) -> None:
        """textual-serve's banner is replaced by `_print_banner`."""
