"""Open a local page in headless Chromium over the DevTools protocol: requests, console errors, DOM, screenshot, PDF.

Usage outside the tests (the README's screenshot):
    python tests/headless.py results/report.html docs/report.png
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]


@dataclass
class Page:
    """What loading the page produced."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    values: object = None
    screenshot: bytes = b""
    pdf: bytes = b""


class _Session:
    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(event)
            self.events.append(json.loads(self.ws.recv()))


def _debugger_url(profile: Path, process: subprocess.Popen) -> str:
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.exists() and len(port_file.read_text().split()) == 2:
            port = port_file.read_text().split()[0]
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


def render(path: Path, script: str = "null", width: int = 1280) -> Page:
    """Load `path` (file://), evaluate `script`, capture the full page as PNG and as a printed PDF."""
    page = Page()
    with tempfile.TemporaryDirectory() as profile:
        process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            session = _Session(_debugger_url(Path(profile), process))
            for domain in ("Page", "Network", "Runtime", "Log"):
                session.call(f"{domain}.enable")
            session.call(
                "Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1, mobile=False
            )
            session.events.clear()
            session.call("Page.navigate", url=Path(path).resolve().as_uri())
            session.wait_for("Page.loadEventFired")
            page.values = json.loads(
                session.call("Runtime.evaluate", expression=f"JSON.stringify({script})", returnByValue=True)["result"][
                    "value"
                ]
            )
            height = session.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
            shot = session.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            )
            page.screenshot = base64.b64decode(shot["data"])
            page.pdf = base64.b64decode(session.call("Page.printToPDF")["data"])
            for event in session.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Network.requestWillBeSent":
                    page.requests.append(params["request"]["url"])
                elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                    page.errors.append(json.dumps(params["args"]))
                elif method == "Runtime.exceptionThrown":
                    page.errors.append(json.dumps(params["exceptionDetails"]))
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    page.errors.append(params["entry"]["text"])
            session.ws.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    return page


if __name__ == "__main__":
    Path(sys.argv[2]).write_bytes(render(Path(sys.argv[1])).screenshot)
