"""Helpers of the web chat's browser tests: a host site on another origin that embeds the
widget, a TCP proxy between the browser and the studio that a test can cut, and a recorder
of what the chat bubbles showed."""

from __future__ import annotations

import contextlib
import html
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.conftest import free_port


class CuttableProxy:
    """Forwards TCP connections from a loopback port to the studio's port, until cut.

    ``cut()`` closes every connection (the browser sees its socket drop, as when a network
    goes away) and refuses new ones; ``restore()`` listens again on the same port.
    ``deafen()`` keeps the connections but throws away what the server sends (a network
    that lost one direction): the server gets the browser's messages, the browser hears
    nothing back. The next ``restore()`` ends it.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._deaf = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CuttableProxy:
        self.restore()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cut()

    def restore(self) -> None:
        with self._lock:
            self._deaf = False
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self._listener = listener
            self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
            self._acceptor.start()

    def cut(self) -> None:
        with self._lock:
            self._listener = None
            acceptor, self._acceptor = self._acceptor, None
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)
        # The accepting thread closes the listener: closed under its select() the port would
        # stay taken until that returned, and restore() could not listen on it again.
        if acceptor is not None:
            acceptor.join(timeout=5)

    def deafen(self) -> None:
        self._deaf = True

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._listener is listener:
                self._accept_one(listener)

    def _accept_one(self, listener: socket.socket) -> None:
        ready, _, _ = select.select([listener], [], [], 0.05)
        if not ready:
            return
        client, _address = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            _close(client)
            return
        with self._lock:
            if self._listener is not listener:  # cut while connecting
                _close(client)
                _close(upstream)
                return
            self._sockets.update((client, upstream))
        threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, to_browser: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if to_browser and self._deaf:
                    continue
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(target)
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class HostSite:
    """Another site (another origin: its own loopback port) whose one page embeds the widget
    with the documented snippet. Its stylesheet is hostile on purpose: inherited fonts and
    colours and rules for buttons and lists that must not reach the widget."""

    def __init__(self, loader_url: str, connector: int, title: str) -> None:
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme Shop</title>
<style>
  body {{ font: italic 30px/3 serif; color: rgb(0, 128, 0); background: #fffbe6; }}
  button {{ background: rgb(255, 0, 0) !important; font-size: 40px !important; }}
  li, p, div {{ margin: 20px; letter-spacing: 4px; }}
</style></head>
<body><h1>Acme Shop</h1><p>Our products.</p>
<script src="{html.escape(loader_url)}" data-connector="{connector}"
  data-title="{html.escape(title)}" async></script>
</body></html>"""
        body = page.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the handler's naming
                if self.path != "/":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostSite:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# Records every text the assistant's bubbles showed (in the widget's shadow root or on the
# full page), so a test can tell that an answer grew before it was complete.
BUBBLE_RECORDER = """
(selector) => {
  const host = document.querySelector(selector);
  const root = host && host.shadowRoot ? host.shadowRoot : document;
  const seen = (window.__bubbles = []);
  const record = () => {
    root.querySelectorAll('li[data-role="assistant"]').forEach((item, index) => {
      const text = item.querySelector('.asc-bubble').textContent;
      const last = seen.filter((entry) => entry.index === index).pop();
      if (!last || last.text !== text || last.status !== item.dataset.status) {
        seen.push({ index, text, status: item.dataset.status });
      }
    });
  };
  new MutationObserver(record).observe(root, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
}
"""
