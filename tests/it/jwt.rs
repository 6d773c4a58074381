//! JWT admission against tokens signed by an independent implementation (PyJWT vectors in
//! tests/data/jwt/, made by its gen.py): each valid HS256/RS256/ES256 token is admitted, each
//! bad one refused with 401 and the reason of the check that failed; oversized tokens are
//! refused before decoding; file tokens and JWTs work side by side; private channels need a
//! matching `channels` claim (403); the hook sees `sub`; reload picks up new keys; a connection
//! is closed with 1008 "token expired" when its token expires.

use crate::common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tungstenite::Message;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/jwt")
        .join(name)
}

fn vectors() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(data("vectors.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

fn token(name: &str) -> String {
    vectors()[name]["token"].as_str().unwrap().to_string()
}

/// The app's configuration in the vectors: both key kinds, issuer and audience checked.
fn app_config(c: &mut Config) {
    c.jwt_secret_file = Some(data("secret.txt"));
    c.jwt_public_key_file = Some(data("public.pem"));
    c.jwt_issuer = Some("https://app.example".into());
    c.jwt_audience = Some("wschat".into());
}

/// The handshake answer's head for `path` with `token` as `?token=` or as a Bearer header.
fn answer(addr: SocketAddr, path: &str, token: &str, bearer: bool) -> String {
    let request = if bearer {
        upgrade_request(addr, path, &format!("Authorization: Bearer {token}\r\n"))
    } else {
        let sep = if path.contains('?') { '&' } else { '?' };
        upgrade_request(addr, &format!("{path}{sep}token={token}"), "")
    };
    response_head(addr, request.as_bytes())
}

fn status(head: &str) -> &str {
    head.get(9..12).unwrap_or("closed")
}

fn assert_refused(head: &str, reason: &str) {
    assert_eq!(status(head), "401", "{head}");
    let want = format!(
        "WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"{reason}\"\r\n"
    );
    assert!(head.contains(&want), "want {want:?} in {head}");
}

#[test]
fn independent_vectors_get_their_verdicts() {
    let server = start(app_config);
    let addr = server.local_addr();
    let vectors = vectors();
    assert!(vectors.len() >= 15, "vectors.json is incomplete");
    for (i, (name, v)) in vectors.iter().enumerate() {
        let token = v["token"].as_str().unwrap();
        let expect = v["expect"].as_str().unwrap();
        // Both ways of presenting a token, alternately.
        let head = answer(addr, "/echo", token, i % 2 == 0);
        if expect == "ok" {
            assert_eq!(status(&head), "101", "{name}: {head}");
        } else {
            assert_refused(&head, expect);
        }
    }
}

#[test]
fn the_name_claim_binds_the_chat_name_and_numeric_sub_is_accepted() {
    let server = start(app_config);
    let addr = server.local_addr();
    for (vector, name) in [
        ("hs256_valid", "alice"),
        ("rs256_valid", "bob"),
        ("es256_valid", "carol"),
    ] {
        let (mut ws, welcome) =
            chat_connect(addr, &format!("token={}&name=mallory", token(vector)));
        assert_eq!(welcome["name"], name, "{vector}: {welcome}");
        // Bound exactly as a file token's NAME: renaming is refused.
        let m = ask(
            &mut ws,
            serde_json::json!({"type": "login", "name": "eve", "ref": 9}),
        );
        assert_eq!(m["code"], "name_bound", "{vector}: {m}");
    }
    // Without claims a JWT is an unbound token: the URL's name is used, renaming works.
    let (mut ws, welcome) = chat_connect(
        addr,
        &format!("token={}&name=zed", token("hs256_no_claims")),
    );
    assert_eq!(welcome["name"], "zed", "{welcome}");
    let m = ask(
        &mut ws,
        serde_json::json!({"type": "login", "name": "zora", "ref": 1}),
    );
    assert_eq!(m["type"], "welcome", "{m}");
    assert_eq!(m["name"], "zora", "{m}");
}

#[test]
fn an_hmac_is_never_keyed_with_a_public_key() {
    // Only public keys: HS256 is not in the allowed set at all.
    let server = start(|c| c.jwt_public_key_file = Some(data("public.pem")));
    let addr = server.local_addr();
    let head = answer(addr, "/", &token("hs256_keyed_with_rsa_public_key"), false);
    assert_refused(&head, "algorithm not allowed");
    assert_refused(
        &answer(addr, "/", &token("hs256_valid"), true),
        "algorithm not allowed",
    );
    assert_eq!(
        status(&answer(addr, "/", &token("rs256_valid"), false)),
        "101"
    );
    // Only a secret: RS256 and ES256 are not allowed, whatever they carry.
    let server = start(|c| c.jwt_secret_file = Some(data("secret.txt")));
    let addr = server.local_addr();
    assert_refused(
        &answer(addr, "/", &token("rs256_valid"), false),
        "algorithm not allowed",
    );
    assert_refused(
        &answer(addr, "/", &token("es256_valid"), true),
        "algorithm not allowed",
    );
    assert_refused(
        &answer(addr, "/", &token("alg_none"), false),
        "algorithm not allowed",
    );
}

#[test]
fn a_64_kib_token_is_refused_before_decoding() {
    let server = start(|c| {
        app_config(c);
        // Let the head through, so the token check (not the head limit) is what refuses.
        c.max_head_size = 256 * 1024;
    });
    let addr = server.local_addr();
    let segment = "A".repeat(32 * 1024);
    let huge = format!("eyJhbGciOiJIUzI1NiJ9.{segment}.{segment}");
    assert!(huge.len() > 64 * 1024);
    assert_refused(&answer(addr, "/", &huge, false), "token too large");
    assert_refused(&answer(addr, "/", &huge, true), "token too large");
}

#[test]
fn file_tokens_and_jwts_work_side_by_side() {
    let server = start(|c| {
        app_config(c);
        c.tokens = vec![("filetoken".into(), Some("frank".into()))];
    });
    let addr = server.local_addr();
    assert_eq!(status(&answer(addr, "/", "filetoken", false)), "101");
    assert_eq!(
        status(&answer(addr, "/", &token("es256_valid"), true)),
        "101"
    );
    assert_refused(&answer(addr, "/", "not-a-token", false), "unknown token");
    // No token at all: a bare challenge (RFC 6750 3.1: no error code without credentials).
    let head = response_head(addr, upgrade_request(addr, "/", "").as_bytes());
    assert_eq!(status(&head), "401", "{head}");
    assert!(head.contains("WWW-Authenticate: Bearer\r\n"), "{head}");
    let (_ws, welcome) = chat_connect(addr, "token=filetoken");
    assert_eq!(welcome["name"], "frank");
}

#[test]
fn keys_alone_make_tokens_required() {
    // Fail closed: configuring a key is enough to refuse everyone without a token.
    let server = start(|c| c.jwt_secret_file = Some(data("secret.txt")));
    let addr = server.local_addr();
    for path in ["/", "/echo", "/chat", "/relay/x"] {
        let head = response_head(addr, upgrade_request(addr, path, "").as_bytes());
        assert_eq!(status(&head), "401", "{path}: {head}");
    }
    // An unreadable key file stops the server from starting rather than admitting anyone.
    let mut config = Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.jwt_public_key_file = Some(data("no-such-file.pem"));
    assert!(Server::bind(config).is_err());
}

#[test]
fn private_channels_need_a_matching_channels_claim() {
    let server = start(|c| {
        app_config(c);
        c.tokens = vec![("filetoken".into(), None)];
        c.private_channels = vec!["team-*".into(), "ops".into()];
    });
    let addr = server.local_addr();
    let team = token("rs256_team"); // channels: ["team-*"]
    let plain = token("hs256_valid"); // no channels claim
    assert_eq!(status(&answer(addr, "/relay/team-a", &team, false)), "101");
    assert_eq!(status(&answer(addr, "/relay/team-b", &team, true)), "101");
    for (path, tok) in [
        ("/relay/team-a", plain.as_str()),
        ("/relay/team-a", "filetoken"),
        ("/relay/ops", team.as_str()),
    ] {
        let head = answer(addr, path, tok, false);
        assert_eq!(status(&head), "403", "{path}: {head}");
        assert!(head.contains("insufficient_scope"), "{head}");
    }
    // Channels that are not private stay open to every admitted token.
    assert_eq!(status(&answer(addr, "/relay/public", &plain, false)), "101");
    assert_eq!(
        status(&answer(addr, "/relay/news", "filetoken", true)),
        "101"
    );
    // The relay itself works for the claim holder.
    let mut a = connect(addr, &format!("/relay/team-a?token={team}"));
    let mut b = connect(addr, &format!("/relay/team-a?token={team}"));
    wait_until(IO_TIMEOUT, || server.handle().connection_count() == 2);
    a.send(Message::text("hello team")).unwrap();
    assert_eq!(recv_text(&mut b), "hello team");
}

#[test]
fn the_admission_hook_sees_the_jwt_subject() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut config = Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    app_config(&mut config);
    config.tokens = vec![("filetoken".into(), None)];
    let server = Server::builder(config)
        .admit(move |req| {
            log.lock().unwrap().push(req.user().map(String::from));
            if req.user() == Some("u-2") {
                Err(403) // the app bans this user
            } else {
                Ok(())
            }
        })
        .bind()
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(
        status(&answer(addr, "/", &token("es256_valid"), false)),
        "101"
    );
    assert_eq!(status(&answer(addr, "/", "filetoken", false)), "101");
    assert_eq!(
        status(&answer(addr, "/", &token("rs256_valid"), false)),
        "403"
    );
    // Refused tokens never reach the hook.
    assert_eq!(status(&answer(addr, "/", &token("expired"), false)), "401");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some("3".to_string()), None, Some("u-2".to_string())]
    );
}

#[test]
fn reload_rereads_the_key_files() {
    let dir = TempDir::new("jwt-reload");
    let secret = dir.0.join("secret");
    std::fs::write(&secret, "first-secret-0123456789abcdef0123\n").unwrap();
    let file = secret.clone();
    let server = start(move |c| c.jwt_secret_file = Some(file));
    let addr = server.local_addr();
    let claims = wschat::TokenClaims::default();
    let old = wschat::sign_token(&secret, &claims).unwrap();
    assert_eq!(status(&answer(addr, "/", &old, false)), "101");

    std::fs::write(&secret, "second-secret-0123456789abcdef012\n").unwrap();
    server.handle().reload_tokens().unwrap();
    let new = wschat::sign_token(&secret, &claims).unwrap();
    assert_refused(&answer(addr, "/", &old, false), "bad signature");
    assert_eq!(status(&answer(addr, "/", &new, false)), "101");

    // An unreadable key file on reload keeps the keys in force.
    std::fs::remove_file(&secret).unwrap();
    assert!(server.handle().reload_tokens().is_err());
    assert_eq!(status(&answer(addr, "/", &new, true)), "101");
}

#[test]
fn the_token_subcommand_prints_a_token_the_server_accepts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["token", "--secret-file"])
        .arg(data("secret.txt"))
        .args(["--sub", "op-1", "--name", "operator", "--exp", "600"])
        .args(["--rooms", "a,team-*", "--channels", "ops"])
        .args(["--iss", "https://app.example", "--aud", "wschat"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let minted = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let server = start(|c| {
        app_config(c);
        c.private_channels = vec!["ops".into()];
    });
    let addr = server.local_addr();
    assert_eq!(status(&answer(addr, "/relay/ops", &minted, false)), "101");
    let (_ws, welcome) = chat_connect(addr, &format!("token={minted}"));
    assert_eq!(welcome["name"], "operator");
}

/// A server that takes HS256 tokens signed with a fresh secret (returned: its file, to sign
/// with), with no leeway, so that a close comes at `exp` itself and a test stays short; `tune`
/// sets the rest.
fn no_leeway_server(tag: &str, tune: impl FnOnce(&mut Config)) -> (TempDir, PathBuf, Server) {
    let dir = TempDir::new(tag);
    let secret = dir.0.join("secret");
    std::fs::write(&secret, "expiry-secret-0123456789abcdef0123").unwrap();
    let file = secret.clone();
    let server = start(move |c| {
        c.jwt_secret_file = Some(file);
        c.jwt_leeway = Duration::ZERO;
        tune(c);
    });
    (dir, secret, server)
}

#[test]
fn a_connection_is_closed_with_1008_when_its_token_expires() {
    let (_dir, secret, server) = no_leeway_server("jwt-expiry", |_| {});
    let addr = server.local_addr();
    let mut claims = wschat::TokenClaims::default();
    claims.lifetime = Duration::from_secs(2);
    claims.name = Some("shortlived".into());
    let short = wschat::sign_token(&secret, &claims).unwrap();
    let exp = {
        let payload = short.split('.').nth(1).unwrap();
        let json = base64_url_decode(payload);
        serde_json::from_slice::<Value>(&json).unwrap()["exp"]
            .as_u64()
            .unwrap()
    };
    let long = wschat::sign_token(&secret, &wschat::TokenClaims::default()).unwrap();

    let mut echo = connect(addr, &format!("/echo?token={short}"));
    let (mut chat, welcome) = chat_connect(addr, &format!("token={short}"));
    assert_eq!(welcome["name"], "shortlived");
    let mut survivor = connect(addr, &format!("/echo?token={long}"));
    echo.send(Message::text("still valid")).unwrap();
    assert_eq!(recv_text(&mut echo), "still valid");

    for ws in [&mut echo, &mut chat] {
        // Within IO_TIMEOUT (10 s, the read timeout) of a 2 s token.
        let frame = loop {
            match ws.read() {
                Ok(Message::Close(Some(frame))) => break frame,
                Ok(Message::Close(None)) => panic!("close without a code"),
                Ok(_) => {}
                Err(e) => panic!("expected close 1008, got {e}"),
            }
        };
        assert_eq!(u16::from(frame.code), 1008);
        assert_eq!(frame.reason.as_str(), "token expired");
        // Not before `exp` (whole seconds; the clocks are the same machine's).
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(now.as_secs_f64() >= exp as f64 - 0.05, "closed early");
    }
    // The long-lived token's connection is untouched.
    survivor.send(Message::text("here")).unwrap();
    assert_eq!(recv_text(&mut survivor), "here");
    // And the expired token is now refused at the door (once `exp`'s whole second is over:
    // NumericDate has one-second steps, and a token is valid through its `exp` second).
    assert!(wait_until(IO_TIMEOUT, || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            > exp
    }));
    assert_refused(&answer(addr, "/echo", &short, false), "expired");
}

/// A relay client that never speaks, on a server with no heartbeat and no other traffic, is
/// still closed at `exp`: nothing but the accept thread's announcement of new clients wakes the
/// dispatcher here (its `Open` waits in the joining inbox, `Hub::take_joined`), so this fails if
/// a quiet handshake is never announced.
#[test]
fn a_silent_client_alone_on_the_server_is_closed_when_its_token_expires() {
    let (_dir, secret, server) = no_leeway_server("jwt-silent-expiry", |c| {
        c.ping_interval = Duration::ZERO; // no heartbeat tick wakes the dispatcher
    });
    let mut claims = wschat::TokenClaims::default();
    claims.lifetime = Duration::from_secs(1);
    let short = wschat::sign_token(&secret, &claims).unwrap();
    let mut silent = connect(server.local_addr(), &format!("/?token={short}"));
    // Within IO_TIMEOUT (10 s, the read timeout) of a 1 s token.
    match silent.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(frame.reason.as_str(), "token expired");
        }
        other => panic!("expected close 1008 at exp, got {other:?}"),
    }
}

/// base64url without padding, for reading a token's payload in the test.
fn base64_url_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn private_rooms_need_a_matching_rooms_claim() {
    let server = start(|c| {
        app_config(c);
        c.tokens = vec![("filetoken".into(), Some("frank".into()))];
        c.chat.private_rooms = vec!["Team-*".into()];
    });
    let addr = server.local_addr();
    // dave's token lists `team-*`: he joins by URL, talks, and sees the room.
    let (mut dave, welcome) =
        chat_connect(addr, &format!("token={}&room=team-a", token("rs256_team")));
    assert_eq!(welcome["name"], "dave");
    let said = ask(
        &mut dave,
        serde_json::json!({"type": "say", "room": "team-a", "text": "the plan", "ref": 1}),
    );
    assert_ne!(said["type"], "error", "{said}");
    let rooms = ask(&mut dave, serde_json::json!({"type": "rooms", "ref": 2}));
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"team-a"), "{rooms}");
    let history = ask(
        &mut dave,
        serde_json::json!({"type": "history", "room": "TEAM-A", "ref": 3}),
    );
    assert_eq!(history["type"], "history", "{history}");

    // alice's JWT has no rooms claim, frank's is a file token: neither may touch it.
    for query in [
        format!("token={}", token("hs256_valid")),
        "token=filetoken".to_string(),
    ] {
        let mut ws = connect(addr, &format!("/chat?{query}&room=team-a"));
        // The URL's private room is refused; the client lands in the default room instead.
        let refused = next_of_type(&mut ws, "error");
        assert_eq!(refused["code"], "forbidden", "{refused}");
        let joined = next_of_type(&mut ws, "joined");
        assert_eq!(joined["room"], "lobby");
        for (i, req) in [
            serde_json::json!({"type": "join", "room": "team-a"}),
            serde_json::json!({"type": "join", "room": "team-new"}),
            serde_json::json!({"type": "history", "room": "team-a"}),
            serde_json::json!({"type": "users", "room": "Team-A"}),
        ]
        .into_iter()
        .enumerate()
        {
            let mut req = req;
            req["ref"] = (10 + i).into();
            let answer = ask(&mut ws, req.clone());
            assert_eq!(answer["code"], "forbidden", "{req} -> {answer}");
        }
        let rooms = ask(&mut ws, serde_json::json!({"type": "rooms", "ref": 20}));
        let listed = rooms["rooms"].as_array().unwrap();
        assert!(listed.iter().all(|r| r["name"] != "team-a"), "{rooms}");
        assert!(listed.iter().any(|r| r["name"] == "lobby"), "{rooms}");
    }
}

#[test]
fn an_admin_token_says_as_a_bot_in_any_room_and_others_may_not() {
    let dir = TempDir::new("jwt-admin");
    let secret = dir.0.join("secret");
    std::fs::write(&secret, "admin-secret-0123456789abcdef0123\n").unwrap();
    let file = secret.clone();
    let server = start(move |c| c.jwt_secret_file = Some(file));
    let addr = server.local_addr();
    let sign = |name: &str, admin: bool| {
        let mut claims = wschat::TokenClaims::default();
        claims.name = Some(name.into());
        claims.admin = admin;
        wschat::sign_token(&secret, &claims).unwrap()
    };
    let (mut reader, _) = chat_connect(addr, &format!("room=news&token={}", sign("reader", false)));
    let (mut ops, _) = chat_connect(addr, &format!("room=ops&token={}", sign("ops", true)));
    // The admin is not in `news`, and says it as `ci`: it gets its copy with its ref.
    let answer = ask(
        &mut ops,
        json!({"type": "say", "room": "news", "as": "ci", "text": "deploy done", "ref": 1}),
    );
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(
        (answer["from"].as_str(), answer["room"].as_str()),
        (Some("ci"), Some("news"))
    );
    let got = next_of_type(&mut reader, "message");
    assert_eq!(
        (got["from"].as_str(), got["text"].as_str()),
        (Some("ci"), Some("deploy done"))
    );
    assert_eq!(got["id"], answer["id"]);
    // Without the claim: forbidden, and nothing is said.
    let refused = ask(
        &mut reader,
        json!({"type": "say", "room": "news", "as": "ci", "text": "fake", "ref": 2}),
    );
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
}

#[test]
fn a_jwt_cannot_take_a_name_the_tokens_file_reserves() {
    let dir = TempDir::new("jwt-reserved");
    let secret = dir.0.join("secret");
    std::fs::write(&secret, "reserve-secret-0123456789abcdef01\n").unwrap();
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, "tokA alice\n").unwrap();
    let (s, t) = (secret.clone(), tokens.clone());
    let server = start(move |c| {
        c.jwt_secret_file = Some(s);
        c.tokens_file = Some(t);
    });
    let addr = server.local_addr();
    let mut claims = wschat::TokenClaims::default();
    claims.name = Some("Alice".into());
    let jwt = wschat::sign_token(&secret, &claims).unwrap();
    let mut ws = connect(addr, &format!("/chat?token={jwt}"));
    let first = recv_json(&mut ws);
    assert_eq!(first["code"], "name_taken", "{first}");
    assert_eq!(close_code_after_data(&mut ws), 1008);
    // The file token's owner still gets it.
    let (_alice, welcome) = chat_connect(addr, "token=tokA");
    assert_eq!(welcome["name"], "alice");
}
