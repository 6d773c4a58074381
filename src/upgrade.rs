//! The HTTP → WebSocket handshake (RFC 6455 section 4.2) and its checks, nothing else.
//!
//! We answer the handshake ourselves rather than through `tungstenite::accept` because the
//! request head has already been read (to tell WebSocket upgrades from page requests), and
//! because `accept` refuses frames that arrive in the same read as the head; here they are
//! handed on to the connection loop.

use crate::http::Head;

/// What a WebSocket connection is for, decided from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/` (channel `""`) or `/relay/NAME`: every message goes to every other client of the
    /// same channel.
    Relay(String),
    /// `/echo`: every message goes back to its sender.
    Echo,
    /// `/chat`: the JSON chat protocol (PROTOCOL.md); `?name=` and `?room=` log in and join
    /// in one step.
    Chat {
        name: Option<String>,
        room: Option<String>,
        /// The name comes from an access token and cannot be changed.
        bound: bool,
    },
}

/// Longest relay channel name, in bytes. A name is a path segment; 64 is plenty for
/// `sensors.kitchen.temperature`-style names and keeps the registry's keys small.
const MAX_CHANNEL_LEN: usize = 64;

/// The route for a WebSocket path, or `None` when nothing is served there (404).
pub(crate) fn route(path: &str) -> Option<Route> {
    match path {
        "" | "/" => Some(Route::Relay(String::new())),
        "/echo" => Some(Route::Echo),
        "/chat" => Some(Route::Chat {
            name: None,
            room: None,
            bound: false,
        }),
        _ => {
            let name = path.strip_prefix("/relay/")?;
            valid_channel(name).then(|| Route::Relay(name.to_string()))
        }
    }
}

/// Relay channel names: 1-64 characters from the URL-safe set `A-Z a-z 0-9 - . _ ~`, so the
/// name in the URL and in the registry are the same string with no decoding.
pub(crate) fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether a request asks for a WebSocket upgrade at all. Anything else is a page request.
pub(crate) fn wants_websocket(head: &Head) -> bool {
    head.has_token("upgrade", "websocket")
}

/// A refused handshake: the HTTP status and any extra header it needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub headers: &'static [(&'static str, &'static str)],
    /// Said in the debug log line, never to the client.
    pub why: &'static str,
}

fn refuse(status: u16, why: &'static str) -> Refusal {
    Refusal {
        status,
        headers: &[],
        why,
    }
}

/// An accepted handshake: where the connection goes and the 101 response to send.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub route: Route,
    pub response: Vec<u8>,
}

/// Checks a WebSocket upgrade request and builds the 101 answer.
///
/// `protocols` lists the subprotocols the endpoint supports, in order of preference; the answer
/// names the first one the client offered, and none when there is no match (RFC 6455 4.2.2: the
/// server must not name a protocol the client did not offer).
pub(crate) fn accept(
    head: &Head,
    protocols: &dyn Fn(&Route) -> Vec<String>,
) -> Result<Accepted, Refusal> {
    let mut route = route(head.path()).ok_or(refuse(404, "no WebSocket endpoint at this path"))?;
    if matches!(route, Route::Chat { .. })
        && (head.query_param_malformed("name") || head.query_param_malformed("room"))
    {
        return Err(refuse(
            400,
            "name or room in the URL is not valid percent-encoding",
        ));
    }
    if let Route::Chat { name, room, .. } = &mut route {
        *name = head.query_param("name").filter(|n| !n.trim().is_empty());
        *room = head.query_param("room").filter(|r| !r.trim().is_empty());
    }
    if head.method != "GET" {
        return Err(refuse(400, "handshake method is not GET"));
    }
    if head.minor_version < 1 {
        return Err(refuse(400, "handshake needs HTTP/1.1"));
    }
    if head.header("host").is_none() {
        return Err(refuse(400, "handshake without Host"));
    }
    if !head.has_token("connection", "upgrade") {
        return Err(refuse(400, "Connection header lacks Upgrade"));
    }
    // RFC 6455 11.3.1/11.3.5: these two must not appear more than once.
    let count = |name: &str| {
        head.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    if count("sec-websocket-key") > 1 || count("sec-websocket-version") > 1 {
        return Err(refuse(400, "repeated Sec-WebSocket-Key or -Version header"));
    }
    if head.header("sec-websocket-version") != Some("13") {
        return Err(Refusal {
            status: 426,
            headers: &[("Sec-WebSocket-Version", "13")],
            why: "unsupported Sec-WebSocket-Version",
        });
    }
    let key = head
        .header("sec-websocket-key")
        .filter(|k| valid_key(k))
        .ok_or(refuse(400, "missing or malformed Sec-WebSocket-Key"))?;

    let supported = protocols(&route);
    let chosen = offered_protocols(head).find(|p| supported.iter().any(|s| s == p));

    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        tungstenite::handshake::derive_accept_key(key.as_bytes())
    );
    if let Some(p) = chosen {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(p);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    Ok(Accepted {
        route,
        response: response.into_bytes(),
    })
}

/// The subprotocols a client offered, in its order, across repeated headers.
fn offered_protocols(head: &Head) -> impl Iterator<Item = &str> {
    head.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// A key is the base64 encoding of 16 bytes: 22 characters of the base64 alphabet and `==`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b.ends_with(b"==")
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[(&str, &str)], target: &str) -> Head {
        Head {
            method: "GET".into(),
            target: target.into(),
            minor_version: 1,
            headers: lines
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            rest: Vec::new(),
        }
    }

    const GOOD: &[(&str, &str)] = &[
        ("Host", "localhost"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];

    fn none(_: &Route) -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn rfc_sample_key_gives_rfc_accept() {
        let ok = accept(&head(GOOD, "/"), &none).unwrap();
        let text = String::from_utf8(ok.response).unwrap();
        // The example from RFC 6455 section 1.3.
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert_eq!(ok.route, Route::Relay(String::new()));
    }

    #[test]
    fn routes() {
        assert_eq!(route("/relay/news"), Some(Route::Relay("news".into())));
        assert_eq!(route("/echo"), Some(Route::Echo));
        assert_eq!(route("/relay/"), None);
        assert_eq!(route("/relay/a/b"), None);
        assert_eq!(route("/relay/%2e%2e"), None);
        assert_eq!(route("/nope"), None);
    }

    #[test]
    fn refusals() {
        let mut h = head(GOOD, "/");
        h.method = "POST".into();
        assert_eq!(accept(&h, &none).unwrap_err().status, 400);

        let v8: Vec<_> = GOOD
            .iter()
            .map(|&(n, v)| {
                if n == "Sec-WebSocket-Version" {
                    (n, "8")
                } else {
                    (n, v)
                }
            })
            .collect();
        let r = accept(&head(&v8, "/"), &none).unwrap_err();
        assert_eq!(r.status, 426);
        assert_eq!(r.headers, &[("Sec-WebSocket-Version", "13")]);

        let nokey: Vec<_> = GOOD
            .iter()
            .copied()
            .filter(|(n, _)| *n != "Sec-WebSocket-Key")
            .collect();
        assert_eq!(accept(&head(&nokey, "/"), &none).unwrap_err().status, 400);

        let badkey: Vec<_> = GOOD
            .iter()
            .map(|&(n, v)| {
                if n == "Sec-WebSocket-Key" {
                    (n, "short==")
                } else {
                    (n, v)
                }
            })
            .collect();
        assert_eq!(accept(&head(&badkey, "/"), &none).unwrap_err().status, 400);
        assert_eq!(accept(&head(GOOD, "/x"), &none).unwrap_err().status, 404);

        assert_eq!(
            accept(&head(GOOD, "/chat?name=%FF"), &none)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            accept(&head(GOOD, "/chat?room=%zz"), &none)
                .unwrap_err()
                .status,
            400
        );
        assert!(accept(&head(GOOD, "/chat?name=J%C3%BCrgen"), &none).is_ok());

        let mut twice = GOOD.to_vec();
        twice.push(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(accept(&head(&twice, "/"), &none).unwrap_err().status, 400);
    }

    #[test]
    fn picks_first_offered_supported_protocol_and_never_an_unoffered_one() {
        let supports = |_: &Route| vec!["superchat".to_string(), "chat".to_string()];
        let mut lines = GOOD.to_vec();
        lines.push(("Sec-WebSocket-Protocol", "chat, superchat"));
        let text =
            String::from_utf8(accept(&head(&lines, "/"), &supports).unwrap().response).unwrap();
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));

        let mut lines = GOOD.to_vec();
        lines.push(("Sec-WebSocket-Protocol", "mqtt"));
        let text =
            String::from_utf8(accept(&head(&lines, "/"), &supports).unwrap().response).unwrap();
        assert!(!text.contains("Sec-WebSocket-Protocol"));
    }

    use crate::test_rng::Rng;

    /// A path with a query, from parts that matter to routing and query decoding.
    fn random_target(rng: &mut Rng) -> String {
        let parts = [
            "/",
            "/echo",
            "/chat",
            "/relay/",
            "relay",
            "a",
            "news.k-1_~",
            "..",
            "%2e",
            "?",
            "&",
            "name=",
            "room=",
            "%",
            "%2",
            "%zz",
            "%C3%A9",
            "%ff",
            "+",
            "=",
            "é",
            "#",
            "//",
        ];
        let mut t = String::new();
        if rng.below(2) == 0 {
            // A served path and a random query.
            let served = ["/", "/echo", "/chat", "/relay/news", ""];
            let start: &&str = rng.pick(&served);
            t.push_str(start);
            t.push('?');
        }
        for _ in 0..rng.below(8) {
            let part: &&str = rng.pick(&parts);
            t.push_str(part);
        }
        if rng.below(20) == 0 {
            t.push_str(&"x".repeat(70)); // past the channel name limit
        }
        t
    }

    /// The good handshake headers with some dropped, duplicated or given random values, plus
    /// random extra ones (values need not be UTF-8).
    fn random_headers(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
        let values: &[&[u8]] = &[
            b"",
            b"13",
            b"8",
            b"websocket",
            b"Upgrade",
            b"keep-alive, upgrade",
            b"dGhlIHNhbXBsZSBub25jZQ==",
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"!!!!!!!!!!!!!!!!!!!!!!==",
            b"\xff\xfe",
            b" 13 ",
            b"echo-protocol, wschat.v1",
            b",,,",
            b"chat",
        ];
        let mut out = Vec::new();
        for (name, value) in GOOD {
            match rng.below(8) {
                0 => {}
                1 => out.push((name.to_string(), rng.pick(values).to_vec())),
                2 => {
                    out.push((name.to_string(), value.as_bytes().to_vec()));
                    out.push((name.to_uppercase(), rng.pick(values).to_vec()));
                }
                _ => out.push((name.to_string(), value.as_bytes().to_vec())),
            }
        }
        for _ in 0..rng.below(4) {
            let names = [
                "Sec-WebSocket-Protocol",
                "Origin",
                "X-Any",
                "sec-websocket-key",
            ];
            let value = if rng.below(2) == 0 {
                rng.pick(values).to_vec()
            } else {
                (0..rng.below(20)).map(|_| rng.next() as u8).collect()
            };
            out.push((rng.pick(&names).to_string(), value));
        }
        out
    }

    #[test]
    fn fuzz_accept_never_panics_and_only_accepts_what_rfc_6455_4_2_1_allows() {
        let seed = 0xacce_97ed;
        println!("seed {seed:#x}");
        let mut rng = Rng(seed);
        let supports = |route: &Route| match route {
            Route::Echo => vec!["echo-protocol".to_string()],
            Route::Chat { .. } => vec!["wschat.v1".to_string()],
            Route::Relay(_) => Vec::new(),
        };
        let mut accepted = 0;
        for i in 0..5000 {
            let head = Head {
                method: rng
                    .pick(&["GET", "GET", "GET", "POST", "get", "HEAD"])
                    .to_string(),
                target: random_target(&mut rng),
                minor_version: *rng.pick(&[1, 1, 1, 0]),
                headers: random_headers(&mut rng),
                rest: Vec::new(),
            };
            let answer = accept(&head, &supports);
            let Ok(ok) = answer else {
                let status = answer.unwrap_err().status;
                assert!(
                    [400, 404, 426].contains(&status),
                    "case {i}: status {status}"
                );
                continue;
            };
            accepted += 1;
            // Everything RFC 6455 4.2.1 asks of a handshake held.
            assert_eq!(head.method, "GET", "case {i}");
            assert_eq!(head.minor_version, 1, "case {i}");
            assert!(head.header("host").is_some(), "case {i}");
            assert!(head.has_token("connection", "upgrade"), "case {i}");
            assert_eq!(head.header("sec-websocket-version"), Some("13"), "case {i}");
            let key = head.header("sec-websocket-key").unwrap();
            assert!(valid_key(key), "case {i}: key {key:?}");
            // The answer is a complete 101 with the key's accept value.
            let text = String::from_utf8(ok.response).unwrap();
            assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(text.ends_with("\r\n\r\n") && !text[..text.len() - 4].contains("\r\n\r\n"));
            let accept_key = tungstenite::handshake::derive_accept_key(key.as_bytes());
            assert!(text.contains(&format!("Sec-WebSocket-Accept: {accept_key}\r\n")));
            // The route is the path's, and a named protocol was offered and is supported.
            match &ok.route {
                Route::Chat { .. } => assert_eq!(head.path(), "/chat", "case {i}"),
                r => assert_eq!(Some(r), route(head.path()).as_ref(), "case {i}"),
            }
            if let Some(line) = text
                .lines()
                .find(|l| l.starts_with("Sec-WebSocket-Protocol: "))
            {
                let p = &line["Sec-WebSocket-Protocol: ".len()..];
                assert!(supports(&ok.route).iter().any(|s| s == p), "case {i}: {p}");
                assert!(offered_protocols(&head).any(|o| o == p), "case {i}: {p}");
            }
        }
        // The generator keeps enough handshakes valid that the checks above ran.
        assert!(accepted > 200, "only {accepted} handshakes accepted");
    }

    #[test]
    fn fuzz_route_serves_only_known_paths() {
        let mut rng = Rng(0x0040_47e5);
        for _ in 0..5000 {
            let path = random_target(&mut rng);
            let path = path.split('?').next().unwrap();
            match route(path) {
                None => {}
                Some(Route::Echo) => assert_eq!(path, "/echo"),
                Some(Route::Chat { .. }) => assert_eq!(path, "/chat"),
                Some(Route::Relay(name)) if name.is_empty() => {
                    assert!(path.is_empty() || path == "/")
                }
                Some(Route::Relay(name)) => {
                    assert_eq!(path, format!("/relay/{name}"));
                    assert!(valid_channel(&name) && name.len() <= MAX_CHANNEL_LEN);
                }
            }
        }
    }
}
