#!/usr/bin/env bash
# wss:// through nginx, for real: SECURITY.md's recipe (docs/nginx-wschat.conf, templated here
# only for its listen port, certificate paths and upstream port) in Debian's nginx, with a
# self-signed certificate made now, in front of a real wschat. Real clients check: curl loads
# the page over https (certificate verified); .ci/wss_check.py (Python's ssl, raw RFC 6455)
# chats over wss:// and sees the page's origin admitted and another refused (403).
# Both servers get free loopback ports and are stopped by their PIDs.
#
# Usage: .ci/nginx.sh [WSCHAT_BINARY]   (default target/debug/wschat, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx from Debian"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx-light >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >/dev/null

BIN=${1:-target/debug/wschat}
[ -x "$BIN" ] || cargo build --quiet --bin wschat

work=$(mktemp -d)
wschat_pid=""
nginx_pid=""
cleanup() {
  [ -n "$nginx_pid" ] && kill -TERM "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  [ -n "$wschat_pid" ] && kill -TERM "$wschat_pid" 2>/dev/null && wait "$wschat_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wschat on a port it picks itself (it prints the address on its first line).
# --trusted-proxy 127.0.0.1: nginx's X-Forwarded-For names the client (checked in step 3);
# debug logs show the client address of each connection.
RUST_LOG=wschat=debug "$BIN" --addr 127.0.0.1:0 --trusted-proxy 127.0.0.1 \
  >"$work/wschat.out" 2>"$work/wschat.err" &
wschat_pid=$!
for _ in $(seq 1 100); do # 10 s for the first line
  grep -q 'listening on http://' "$work/wschat.out" 2>/dev/null && break
  sleep 0.1
done
up=$(sed -n 's|.*listening on http://\([0-9.:]*\).*|\1|p' "$work/wschat.out" | head -n1)
[ -n "$up" ] || { echo "wschat did not start" >&2; cat "$work/wschat.err" >&2; exit 1; }
up_port=${up##*:}

# A self-signed certificate for 127.0.0.1, made now; the clients trust exactly it.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

tls_port=$(free_port)
# The recipe, templated for ports and paths only.
sed -e "s|listen 443 ssl;|listen 127.0.0.1:$tls_port ssl;|" \
  -e "s|/etc/letsencrypt/live/chat.example.org/fullchain.pem|$work/cert.pem|" \
  -e "s|/etc/letsencrypt/live/chat.example.org/privkey.pem|$work/key.pem|" \
  -e "s|proxy_pass http://127.0.0.1:8080;|proxy_pass http://127.0.0.1:$up_port;|" \
  docs/nginx-wschat.conf >"$work/site.conf"
for must in "127.0.0.1:$tls_port ssl" "$work/cert.pem" "$work/key.pem" "127.0.0.1:$up_port;"; do
  grep -qF "$must" "$work/site.conf" || { echo "the recipe changed: no '$must' after templating" >&2; exit 1; }
done
mkdir -p "$work/tmp"
# The frame nginx needs around a site (what /etc/nginx/nginx.conf gives on a real host),
# pointed at the temporary folder so nothing of the machine's nginx is touched.
cat >"$work/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log info;
events { worker_connections 64; }
http {
    access_log $work/access.log;
    client_body_temp_path $work/tmp/body;
    proxy_temp_path $work/tmp/proxy;
    fastcgi_temp_path $work/tmp/fastcgi;
    uwsgi_temp_path $work/tmp/uwsgi;
    scgi_temp_path $work/tmp/scgi;
    include $work/site.conf;
}
CONF
"$NGINX" -t -p "$work" -c "$work/nginx.conf" 2>&1 | tail -n1
"$NGINX" -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
ok=no
for _ in $(seq 1 100); do # 10 s for nginx to listen
  if curl -fsS --max-time 2 --cacert "$work/cert.pem" "https://127.0.0.1:$tls_port/healthz" >/dev/null 2>&1; then ok=yes; break; fi
  kill -0 "$nginx_pid" 2>/dev/null || break
  sleep 0.1
done
[ "$ok" = yes ] || { echo "nginx did not serve" >&2; cat "$work/error.log" >&2; exit 1; }

# 1. The page over https, certificate verified.
code=$(curl -sS --max-time 10 --cacert "$work/cert.pem" -o "$work/page.html" -w '%{http_code}' "https://127.0.0.1:$tls_port/")
grep -qi '<html' "$work/page.html" && [ "$code" = 200 ] \
  || { echo "FAIL: the page over https: HTTP $code" >&2; exit 1; }
echo "ok: https://127.0.0.1:$tls_port/ through nginx: 200, the chat page ($(wc -c <"$work/page.html") bytes)"

# 2. wss:// chat, and the Origin check through the proxy.
python3 .ci/wss_check.py 127.0.0.1 "$tls_port" "$work/cert.pem"

# 3. The client's address reaching wschat through the proxy: a client on 127.0.0.2 (loopback
# has all of 127.0.0.0/8) upgrades through nginx; the recipe's X-Forwarded-For and wschat's
# --trusted-proxy 127.0.0.1 make wschat see 127.0.0.2, not nginx's 127.0.0.1.
curl -sS --http1.1 --max-time 3 --interface 127.0.0.2 --cacert "$work/cert.pem" -o /dev/null \
  -H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" \
  -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" "https://127.0.0.1:$tls_port/echo" 2>/dev/null || true
seen=no
for _ in $(seq 1 50); do # 5 s for the log line
  grep -q '127\.0\.0\.2:0: client [0-9]* connected' "$work/wschat.err" && { seen=yes; break; }
  sleep 0.1
done
[ "$seen" = yes ] || { echo "FAIL: wschat did not see the client's address 127.0.0.2 through nginx" >&2; grep -a 'connected' "$work/wschat.err" >&2 || true; exit 1; }
echo "ok: the client on 127.0.0.2 reached wschat as 127.0.0.2 (X-Forwarded-For, --trusted-proxy 127.0.0.1)"

echo "nginx: 4 passed, 0 failed"
