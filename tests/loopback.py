"""A loopback HTTP server that the download tests start (model registry,
``Segmenter.from_pretrained``, the tools given a URL)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder; ``/cut/NAME`` announces NAME's full length
    and closes the connection half-way (an interrupted download)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if not self.path.startswith("/cut/"):
            return super().do_GET()
        data = (Path(self.directory) / self.path[len("/cut/") :]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        return None


class Server:
    """A loopback HTTP server for ``folder`` on a free port, in a thread."""

    def __init__(self, folder: Path) -> None:
        handler = lambda *a: Handler(*a, directory=str(folder))  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
