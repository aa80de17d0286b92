"""A webhook receiver for the alert tests, run as its own process: `python webhook_receiver.py DIR` listens on
127.0.0.1 (a free port, written to DIR/port) and appends each request's JSON body as a line to DIR/received."""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

out = Path(sys.argv[1])


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out / "received", "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Receiver)
(out / "port.tmp").write_text(str(server.server_port))
(out / "port.tmp").rename(out / "port")
server.serve_forever()
