"""A real headless Chromium for the browser tests: Debian's chromium and chromium-driver (installed through apt
when missing and we are root), driven by Selenium, and the text of the xterm.js terminal the page draws on."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM = ("chromium", "/usr/bin/chromium")
CHROMEDRIVER = ("chromedriver", "/usr/bin/chromedriver")
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
# Headless in a closed network: no sandbox (root), no GPU, and none of Chromium's own background connections
# (refused here, they stall it).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,800")

# Run before the page's own scripts: textual.js keeps its xterm.js Terminal in `this.terminal` of an object
# nothing global points at; a setter on Object.prototype notes every Terminal assigned to a `terminal` field.
CAPTURE_TERMINAL = """
window.__terminals = [];
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
    if (value && typeof value.write === "function" && value.buffer) window.__terminals.push(value);
  },
});
"""
READ_ROWS = """
const term = (window.__terminals || [])[0];
if (!term) return null;
const buffer = term.buffer.active, rows = [];
for (let y = 0; y < term.rows; y++) {
  const line = buffer.getLine(buffer.viewportY + y);
  rows.push(line ? line.translateToString(true) : "");
}
return rows;
"""


def _which(names: tuple[str, str]) -> str | None:
    found = shutil.which(names[0])
    return found or (names[1] if Path(names[1]).exists() else None)


def find_or_install_chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver; installs Debian's packages when they are missing (root and apt-get
    needed). Raises RuntimeError with the reason when that cannot be done."""
    browser, driver = _which(CHROMIUM), _which(CHROMEDRIVER)
    if browser and driver:
        return browser, driver
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError("Chromium is not installed and cannot be (needs root and apt-get: "
                           f"apt-get install {' '.join(DEBIAN_PACKAGES)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    browser, driver = _which(CHROMIUM), _which(CHROMEDRIVER)
    if not (browser and driver):
        raise RuntimeError("apt-get installed chromium and chromium-driver, yet they are not on PATH")
    return browser, driver


def start_chromium(browser: str, driver: str, profile: Path) -> Any:
    """A headless Chromium (fresh profile folder) under Selenium, the terminal capture installed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE_TERMINAL})
    return chrome


def terminal_rows(chrome: Any) -> list[str]:
    """The rows the page's terminal shows now (empty before it exists)."""
    return chrome.execute_script(READ_ROWS) or []


def send_keys(chrome: Any, *keys: str) -> None:
    """Type into the terminal (xterm.js listens on its hidden textarea)."""
    from selenium.webdriver.common.by import By

    chrome.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys(*keys)
