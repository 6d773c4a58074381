//! Embedding: a host thread publishes 10,000 messages that 50 clients all receive in order, the
//! event receiver sees every client message, hooks admit/refuse and rewrite exactly once,
//! `Handle::say` enters the history, and shutdown from the handle releases the port.

use crate::common::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tungstenite::Message;
use wschat::{Payload, ServerEvent};

#[test]
fn host_publishes_to_50_clients_and_sees_every_client_message() {
    const CLIENTS: usize = 50;
    const PUBLISHED: usize = 10_000;
    let server = wschat::Server::builder({
        let mut c = Config::default();
        c.addr = "127.0.0.1:0".parse().unwrap();
        c
    })
    .events(100_000)
    .bind()
    .unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let events = server.events().unwrap();
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| connect(addr, "/relay/feed")).collect();
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == CLIENTS));

    // Each client says one thing (its peers get it, and so does the host as an event).
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(Message::text(format!("hello from {i}"))).unwrap();
    }
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(me, mut ws)| {
            std::thread::spawn(move || {
                let mut next = 0;
                let mut peers = 0;
                while next < PUBLISHED {
                    let text = recv_text(&mut ws);
                    if let Some(n) = text.strip_prefix("pub ") {
                        assert_eq!(n.parse::<usize>().unwrap(), next, "client {me}: order");
                        next += 1;
                    } else {
                        assert!(text.starts_with("hello from "));
                        assert_ne!(text, format!("hello from {me}"));
                        peers += 1;
                    }
                }
                (ws, peers)
            })
        })
        .collect();
    let publisher = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            for i in 0..PUBLISHED {
                handle.publish_text("feed", format!("pub {i}")).unwrap();
            }
        })
    };
    publisher.join().unwrap();
    let mut open = Vec::new();
    for r in readers {
        let (ws, _peers) = r.join().expect("every client got all 10,000 in order");
        open.push(ws);
    }

    // The events: 50 connects and 50 client messages (the host's own publishes are not events).
    let mut connected = 0;
    let mut said = std::collections::HashSet::new();
    while said.len() < CLIENTS {
        match events.recv_timeout(IO_TIMEOUT).expect("an event") {
            ServerEvent::Connected { path, .. } => {
                assert_eq!(path, "/relay/feed");
                connected += 1;
            }
            ServerEvent::Message {
                data: Payload::Text(t),
                path,
                ..
            } => {
                assert_eq!(path, "/relay/feed");
                assert!(said.insert(t), "a message was reported twice");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(connected, CLIENTS);

    // Shutdown from the handle: join returns, clients see 1001, the port is free again.
    drop(events);
    let joiner = std::thread::spawn(move || server.join());
    handle.shutdown();
    for ws in &mut open {
        // Drain what is still queued, then the Close.
        loop {
            match ws.read() {
                Ok(Message::Close(Some(f))) => {
                    assert_eq!(u16::from(f.code), 1001);
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("expected Close 1001, got {e}"),
            }
        }
    }
    joiner.join().unwrap();
    std::net::TcpListener::bind(addr).expect("port released");
}

#[test]
fn admission_hook_refuses_with_its_status() {
    let server = wschat::Server::builder({
        let mut c = Config::default();
        c.addr = "127.0.0.1:0".parse().unwrap();
        c
    })
    .admit(|req| match (req.path(), req.query("user").as_deref()) {
        (_, Some("root")) => Err(403),
        (_, Some(_)) => Ok(()),
        ("/chat", None) => Err(401),
        _ => Err(999), // not a 4xx: sent as 403
    })
    .bind()
    .unwrap();
    let addr = server.local_addr();
    let status = |path: &str| {
        response_head(addr, upgrade_request(addr, path, "").as_bytes())
            .get(9..12)
            .unwrap_or("closed")
            .to_string()
    };
    assert_eq!(status("/chat?user=alice"), "101");
    assert_eq!(status("/chat?user=root"), "403");
    assert_eq!(status("/chat"), "401");
    assert_eq!(status("/"), "403");
}

#[test]
fn filter_hook_rewrites_each_message_exactly_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let server = wschat::Server::builder({
        let mut c = Config::default();
        c.addr = "127.0.0.1:0".parse().unwrap();
        c.chat_rate = 0.0;
        c
    })
    .filter(move |text| {
        counted.fetch_add(1, Ordering::SeqCst);
        if text.contains("forbidden") {
            None
        } else {
            Some(text.replace("darn", "d**n"))
        }
    })
    .bind()
    .unwrap();
    let addr = server.local_addr();
    let mut alice = connect(addr, "/chat?name=alice");
    let mut bob = connect(addr, "/chat?name=bob");
    let next_message = |ws: &mut Client| loop {
        let v: Value = serde_json::from_str(&recv_text(ws)).unwrap();
        if v["type"] == "message" || v["type"] == "error" {
            return v;
        }
    };
    alice
        .send(Message::text(
            r#"{"type":"say","room":"lobby","text":"darn it","ref":1}"#,
        ))
        .unwrap();
    alice.send(Message::text("plain darn")).unwrap();
    alice
        .send(Message::text(
            r#"{"type":"say","room":"lobby","text":"forbidden","ref":2}"#,
        ))
        .unwrap();
    let own = next_message(&mut alice);
    assert_eq!(
        (own["text"].as_str(), own["ref"].as_i64()),
        (Some("d**n it"), Some(1))
    );
    assert_eq!(next_message(&mut alice)["text"], "plain d**n");
    let refused = next_message(&mut alice);
    assert_eq!(
        (refused["code"].as_str(), refused["ref"].as_i64()),
        (Some("filtered"), Some(2))
    );
    assert_eq!(next_message(&mut bob)["text"], "d**n it");
    assert_eq!(next_message(&mut bob)["text"], "plain d**n");
    // Three messages, three calls: not once per recipient, not twice per message.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Messages from the host program are not filtered (the host controls them).
    server.handle().say("lobby", "host", "darn host").unwrap();
    assert_eq!(next_message(&mut bob)["text"], "darn host");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn say_enters_history_and_reports_chat_events() {
    let server = wschat::Server::builder({
        let mut c = Config::default();
        c.addr = "127.0.0.1:0".parse().unwrap();
        c
    })
    .events(64)
    .bind()
    .unwrap();
    let handle = server.handle();
    let events = server.events().unwrap();
    let id = handle.say("news", "bot", "first").unwrap();
    assert!(matches!(
        events.recv_timeout(IO_TIMEOUT).unwrap(),
        ServerEvent::ChatMessage { id: i, ref room, ref from, ref text }
            if i == id && room == "news" && from == "bot" && text == "first"
    ));
    assert!(matches!(
        handle.say("bad room!\u{7}", "bot", "x"),
        Err(wschat::Error::Rejected(_))
    ));
    let mut ws = connect(server.local_addr(), "/chat?room=news");
    loop {
        let v: Value = serde_json::from_str(&recv_text(&mut ws)).unwrap();
        if v["type"] == "joined" && v["room"] == "news" {
            assert_eq!(v["history"][0]["text"], "first");
            assert_eq!(v["history"][0]["id"], id);
            break;
        }
    }
    assert!(handle.room_count() >= 1);
}
