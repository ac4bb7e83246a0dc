"""`imgcls-console serve`: the console in a real headless Chromium through textual-serve (a real server process,
a real browser, a real training run), and the guard: token, Host, Origin, no files but the static assets."""

from __future__ import annotations

import http.client
import io
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from PIL import Image

from tests.ui.browser import find_or_install_chromium, send_keys, start_chromium, terminal_rows

EPOCHS = 400  # minutes of training: the run is still training whatever the machine's load; the test stops it
FORBIDDEN = b"403: Forbidden"


# --- the server process ------------------------------------------------------------------------------------------

def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_serving(server: subprocess.Popen[bytes], host: str, port: int, log: Path, seconds: float = 60) -> None:
    """Until the server accepts connections and has printed its address (bounded; between tries it waits on the
    process, which also notices a server that died)."""
    for _ in range(int(seconds / 0.1)):
        try:
            socket.create_connection((host, port), timeout=1).close()
            if "open http" in log.read_text():
                return
        except OSError:
            pass
        try:
            server.wait(timeout=0.1)
            raise AssertionError(f"serve exited with {server.returncode}:\n{log.read_text()}")
        except subprocess.TimeoutExpired:
            pass
    raise AssertionError(f"serve is not listening on {host}:{port} after {seconds}s:\n{log.read_text()}")


@dataclass
class Served:
    """A running `imgcls-console serve` process."""

    port: int
    log: Path
    pid: int

    def sessions(self) -> list[psutil.Process]:
        """The console processes it started (one per open browser session)."""
        children = psutil.Process(self.pid).children(recursive=True)
        return [child for child in children if "console.cli" in " ".join(child.cmdline())]


@contextmanager
def _serve(tmp_path: Path, runs_root: Path, host: str, connect: str, *args: str) -> Iterator[Served]:
    """`imgcls-console serve` on a free port of `host` (reached at `connect`) until the block ends; it must not
    have crashed or printed a traceback by then."""
    port = _free_port(host)
    log = tmp_path / f"serve-{port}.log"
    command = [sys.executable, "-m", "console.cli", "serve", "--host", host, "--port", str(port),
               "--runs-dir", str(runs_root), *args]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_serving(server, connect, port, log)
        yield Served(port, log, server.pid)
        assert server.poll() is None, log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        sessions = Served(port, log, server.pid).sessions()  # console processes (runs are never among them)
        server.terminate()
        for process in sessions:  # one still importing torch takes seconds to quit, and holds nothing: end it
            process.kill()
        psutil.wait_procs(sessions, timeout=10)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver (apt-installed once when missing), and Selenium."""
    pytest.importorskip("selenium", reason="selenium is in the dev extra: pip install -e '.[dev]'")
    try:
        return find_or_install_chromium()
    except RuntimeError as exc:
        pytest.skip(str(exc))


# --- the browser -------------------------------------------------------------------------------------------------

def _until(chrome: Any, condition: Callable[[list[str]], bool], what: str, seconds: float = 90) -> list[str]:
    """The terminal's rows once `condition(rows)` holds (bounded wait)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(chrome, seconds, poll_frequency=0.1).until(lambda c: condition(terminal_rows(c)))
    except TimeoutException:
        raise AssertionError(f"{what}: not shown within {seconds}s; the page shows:\n"
                             + "\n".join(terminal_rows(chrome))) from None
    return terminal_rows(chrome)


def _click_cell(chrome: Any, column: int, row: int) -> None:
    """Click the middle of one character cell of the terminal."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    screen = chrome.find_element(By.CSS_SELECTOR, ".xterm-screen")
    width, height, columns, rows = chrome.execute_script(
        "const r = arguments[0].getBoundingClientRect(), t = window.__terminals[0];"
        "return [r.width, r.height, t.cols, t.rows];", screen)
    x = (column + 0.5) * width / columns - width / 2  # offsets are from the element's centre
    y = (row + 0.5) * height / rows - height / 2
    ActionChains(chrome).move_to_element_with_offset(screen, int(x), int(y)).click().perform()


def _set_field(chrome: Any, rows: list[str], label: str, value: str) -> None:
    """Type a value into one of Launch's fields (found by its label on screen)."""
    from selenium.webdriver.common.keys import Keys

    row = next(i for i, text in enumerate(rows) if text.startswith(f" {label} "))
    column = len(rows[row]) - len(rows[row][len(label) + 1:].lstrip())
    _click_cell(chrome, column, row)
    send_keys(chrome, Keys.CONTROL, "a")
    send_keys(chrome, Keys.CONTROL, "k")
    field = re.compile(rf"^ {label} +([^\s▕]*)")  # the value, up to the column's edge
    _until(chrome, lambda r: any((m := field.match(t)) and m.group(1) == "" for t in r), f"{label} cleared")
    send_keys(chrome, value)
    _until(chrome, lambda r: any((m := field.match(t)) and m.group(1) == value for t in r), f"{label} = {value}")


def _has_chart_points(rows: list[str]) -> bool:
    """Monitor's loss chart has plotted points (braille dots or markers right of a y-axis tick)."""
    plotted = [text.split("┤", 1)[1] for text in rows if "┤" in text]
    monitor = any(text.startswith("Runs followed") for text in rows) and any("loss" in text for text in rows)
    return monitor and any(re.search("[\u2801-\u28ff•]", text) for text in plotted)


def _check_screenshot(png: bytes, rows: list[str], path: Path) -> None:
    """The screenshot is the app drawn in colour (not a blank page), taken while its text showed the nav bar."""
    path.write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.width >= 800 and image.height >= 500
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 20, "the screenshot is (nearly) blank"
    assert max(count for count, _ in colours) < 0.9 * image.width * image.height
    assert "F2 Launch" in rows[0] and "F4 Runs" in rows[0]


# --- tests -------------------------------------------------------------------------------------------------------

def test_browser_session_launches_watches_and_lists_a_run(runs_root: Path, chromium: tuple[str, str],
                                                          tmp_path: Path) -> None:
    """Launch shows quickstart -> start it (epochs set in its field) -> Monitor plots points -> the tab closes and
    its console process ends, the run trains on -> a new session's Runs lists it training -> a stop request
    ends it gracefully (interrupted, `last` saved)."""
    from selenium.webdriver.common.keys import Keys

    from engine.launch import request_stop
    from engine.runs import read_status

    token = "browser-test-token-0123456789"  # given on loopback: required too (the cookie path in a browser)
    with _serve(tmp_path, runs_root, "127.0.0.1", "127.0.0.1", "--token", token) as served:
        port = served.port
        chrome = start_chromium(*chromium, tmp_path / "profile")
        try:
            chrome.get(f"http://127.0.0.1:{port}/?token={token}")  # then a cookie carries it (page, assets, socket)
            assert chrome.current_url == f"http://127.0.0.1:{port}/"
            rows = _until(chrome, lambda r: "F2 Launch" in r[0] and any(" quickstart " in t for t in r[:4])
                          and any("✓ valid" in t for t in r), "Launch with quickstart, checked")
            _set_field(chrome, rows, "epochs", str(EPOCHS))
            send_keys(chrome, Keys.CONTROL, "r")  # Launch's Start
            rows = _until(chrome, _has_chart_points, "Monitor's charts with points")
            _check_screenshot(chrome.get_screenshot_as_png(), rows, tmp_path / "monitor.png")
            run_dir = next(runs_root.iterdir())
            status = read_status(run_dir)
            assert status["state"] in ("starting", "running") and status["epochs"] == EPOCHS
            run = psutil.Process(status["pid"])
            (session,) = served.sessions()

            chrome.get("about:blank")  # the tab leaves: its websocket closes, its console process quits
            session.wait(timeout=30)
            assert run.is_running() and read_status(run_dir)["state"] == "running"

            chrome.get(f"http://127.0.0.1:{port}/")  # a new session (the cookie has the token), a new process
            _until(chrome, lambda r: "F2 Launch" in r[0], "the console again")
            send_keys(chrome, Keys.F4)
            _until(chrome, lambda r: any(run_dir.name in t and "running" in t for t in r),
                   "Runs listing the run, still training")
            blocked = [e["message"] for e in chrome.get_log("browser") if e["source"] == "security"]
            assert all("fonts.googleapis.com" in text for text in blocked), blocked  # the page asks only us
        finally:
            chrome.quit()
        assert run.is_running()  # two sessions came and went; the run trains on
        assert request_stop(run_dir)
        run.wait(timeout=60)
        final = read_status(run_dir)
        assert final["state"] == "interrupted" and 1 <= final["epoch"] < EPOCHS
        assert (run_dir / "checkpoints" / "last" / "meta.json").is_file()


def _request(host: str, port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """One plain HTTP GET with the path sent as written (no normalising): status, body, headers."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


WEBSOCKET_UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_loopback_without_token_serves_only_loopback_names(runs_root: Path, tmp_path: Path) -> None:
    """The default (127.0.0.1, no token): the page and assets load; a DNS name rebound to 127.0.0.1, another
    origin's websocket, a path outside the static folder get nothing."""
    with _serve(tmp_path, runs_root, "127.0.0.1", "127.0.0.1") as served:
        port = served.port
        for host in ("127.0.0.1", "localhost"):
            status, body, headers = _request("127.0.0.1", port, "/", {"Host": f"{host}:{port}"})
            assert status == 200 and b"textual-terminal" in body and f"ws://{host}:{port}/ws".encode() in body
            assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
            assert "connect-src 'self'" in headers["Content-Security-Policy"]
        assert _request("127.0.0.1", port, "/static/css/xterm.css")[0] == 200
        maps = Path(f"/proc/{served.pid}/maps")
        assert not maps.exists() or "libtorch" not in maps.read_text()  # the server never imports torch
        assert _request("127.0.0.1", port, "/", {"Host": f"attacker.example:{port}"})[:2] == (403, FORBIDDEN)
        cross = {**WEBSOCKET_UPGRADE, "Origin": "http://attacker.example"}
        assert _request("127.0.0.1", port, "/ws", cross)[:2] == (403, FORBIDDEN)
        for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/server.py", "/static/", "/download/x"):
            status, body, _ = _request("127.0.0.1", port, path)
            assert status in (403, 404) and b"root:" not in body and b"class " not in body, (path, status)


def _non_loopback_address() -> tuple[str, str]:
    """(address to bind, address to connect to): this machine's own IPv4 address, else every address (0.0.0.0)
    reached through 127.0.0.1."""
    try:
        words = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        words = []
    for word in words:
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", word) and not word.startswith("127."):
            return word, word
    return "0.0.0.0", "127.0.0.1"


def test_non_loopback_bind_needs_the_token(runs_root: Path, tmp_path: Path) -> None:
    """Bound to a non-loopback address without --token: a token is generated and printed; every request without
    it (page, websocket, assets, any path) is a bare 403; with it the page loads, a cookie carries it, the
    websocket opens a console session; no path reaches a file outside the static assets."""
    bind, host = _non_loopback_address()
    with _serve(tmp_path, runs_root, bind, host) as served:
        port = served.port
        token = re.search(r"\?token=([A-Za-z0-9_-]+)", served.log.read_text()).group(1)
        assert len(token) >= 32
        wrong = token[:-1] + ("y" if token[-1] != "y" else "z")  # one character off, never the token itself
        for path in ("/", "/ws", "/static/js/textual.js", "/static/", "/download/x", "/nothing",
                     f"/?token={wrong}", "/static/../server.py"):
            headers = WEBSOCKET_UPGRADE if path == "/ws" else {}
            assert _request(host, port, path, headers)[:2] == (403, FORBIDDEN), path

        status, _, headers = _request(host, port, f"/?token={token}&fontsize=14")
        assert status == 303 and headers["Location"] == "/?fontsize=14"  # the token leaves the address bar
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        cookie_header = {"Cookie": cookie.split(";", 1)[0].strip()}
        cookie_name = cookie_header["Cookie"].split("=", 1)[0]
        assert _request(host, port, "/", {"Cookie": f"{cookie_name}={wrong}"})[:2] == (403, FORBIDDEN)
        status, body, headers = _request(host, port, "/", cookie_header)
        assert status == 200 and b"textual-terminal" in body and f"ws://{host}:{port}/ws".encode() in body
        assert headers["X-Frame-Options"] == "DENY"
        assert _request(host, port, "/static/js/textual.js", cookie_header)[0] == 200

        for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/server.py",
                     "/static/..%2f..%2fserver.py", "/static/css/..%2f..%2fserver.py", "/static/",
                     "/static/js/", "//etc/passwd", "/download/x"):
            status, body, _ = _request(host, port, path, cookie_header)
            assert status in (403, 404) and b"root:" not in body and b"class " not in body, (path, status)
        cross = {**cookie_header, **WEBSOCKET_UPGRADE, "Origin": "http://attacker.example"}
        assert _request(host, port, "/ws", cross)[:2] == (403, FORBIDDEN)

        first = _websocket_first_message(host, port, token)
        assert first, "the console session sent nothing"


def _websocket_first_message(host: str, port: int, token: str) -> bytes:
    """Open the console's websocket with the token (as a browser on the page would) and read its first output."""
    import asyncio

    import aiohttp

    async def main() -> bytes:
        async with aiohttp.ClientSession() as session:
            url = f"http://{host}:{port}/ws?token={token}&width=80&height=24"
            async with session.ws_connect(url, origin=f"http://{host}:{port}") as websocket:
                message = await websocket.receive(timeout=90)
                assert message.type == aiohttp.WSMsgType.BINARY, message
                return message.data

    return asyncio.run(main())


def test_serve_refuses_a_weak_token_and_knows_loopback() -> None:
    """A short token is refused before anything is bound; loopback names and addresses are told apart."""
    from typer.testing import CliRunner

    from console.cli import app
    from console.serve import app_command, is_loopback

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--token", "short"])
    assert result.exit_code == 2 and "at least 16" in result.output
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.0.2.7", "example.org", ""))
    command = app_command(Path("/runs dir"), "quickstart")
    assert command.startswith("exec ") and sys.executable in command and "'/runs dir'" in command
