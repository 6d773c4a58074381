#!/usr/bin/env python3
"""wss:// through the TLS proxy, with Python's standard library only (ssl + a raw RFC 6455
handshake and frames): no WebSocket package, so nothing to install and nothing hidden.

Usage: wss_check.py HOST PORT CAFILE

Checks, each against a deadline (every socket has a timeout):
  1. the page's own origin (https://HOST:PORT) opens /chat over wss and chat works: alice and
     bob join one room, alice says a line, bob receives it;
  2. another origin gets HTTP 403 (the Origin check passes the proxied origin, refuses others).
Exit 0 when all pass; prints one line per check.
"""
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time

HOST, PORT, CAFILE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# Every read and connect: a stuck proxy or server fails the check instead of hanging CI.
TIMEOUT = 10.0
CTX = ssl.create_default_context(cafile=CAFILE)  # verifies the certificate and the host


def upgrade(path, origin):
    """TLS connect, WebSocket upgrade; returns (status, tls socket, bytes read past the head)."""
    raw = socket.create_connection((HOST, PORT), timeout=TIMEOUT)
    tls = CTX.wrap_socket(raw, server_hostname=HOST)
    key = base64.b64encode(os.urandom(16)).decode()
    tls.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = tls.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > 65536:  # a head this long is not an HTTP response head
            break
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, tls, rest


def send_text(tls, text):
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, 0x80 | n)
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    tls.sendall(header + mask + masked)


class Reader:
    def __init__(self, tls, early):
        self.tls, self.buf = tls, early

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.tls.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off : off + n], self.buf[off + n :]
        return b0 & 0x0F, payload

    def json_until(self, pred, limit_s=TIMEOUT):
        """Text frames as JSON until one matches; answers pings; bounded in time and count."""
        end = time.monotonic() + limit_s
        for _ in range(1000):
            if time.monotonic() > end:
                break
            op, payload = self.frame()
            if op == 0x9:  # ping: answer, as a browser would
                mask = os.urandom(4)
                self.tls.sendall(
                    struct.pack("!BB", 0x8A, 0x80 | len(payload))
                    + mask
                    + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                )
                continue
            if op == 0x8:
                raise EOFError(f"close frame {payload!r}")
            if op == 0x1:
                msg = json.loads(payload)
                if pred(msg):
                    return msg
        raise TimeoutError("no matching message")


own = f"https://{HOST}:{PORT}"
st_a, a, early_a = upgrade("/chat?name=alice&room=pi", own)
st_b, b, early_b = upgrade("/chat?name=bob&room=pi", own)
if st_a != 101 or st_b != 101:
    sys.exit(f"FAIL wss upgrade with Origin {own}: HTTP {st_a}/{st_b}")
ra, rb = Reader(a, early_a), Reader(b, early_b)
ra.json_until(lambda m: m.get("type") == "joined" and m.get("room") == "pi")
rb.json_until(lambda m: m.get("type") == "joined" and m.get("room") == "pi")
line = f"hello over wss {os.getpid()}"
send_text(a, json.dumps({"type": "say", "room": "pi", "text": line}))
got = rb.json_until(lambda m: m.get("type") == "message" and m.get("text") == line)
print(f"ok: wss://{HOST}:{PORT}/chat through the proxy, Origin {own}: 101, bob got {got['from']}'s line ({a.version()})")

other = "https://evil.example"
st, c, _ = upgrade("/chat", other)
c.close()
if st != 403:
    sys.exit(f"FAIL Origin {other}: HTTP {st}, want 403")
print(f"ok: Origin {other} through the proxy: HTTP 403")
a.close()
b.close()
