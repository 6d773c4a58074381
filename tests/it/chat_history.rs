//! History over real sockets: a late joiner gets the latest 50 messages in `joined`; paging
//! with `before` walks back over 230 messages without gaps or duplicates; a client that
//! reconnects and asks `after` its last id gets exactly what it missed.

use crate::common::*;
use serde_json::{Value, json};

/// Says `n` messages in `room` through the handle (no client rate limit), with a message in
/// another room between some of them so that the room's ids are not consecutive. Returns
/// the room's (id, text) in order.
fn fill(handle: &wschat::Handle, room: &str, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|i| {
            if i % 3 == 0 {
                handle.say("elsewhere", "noise", "x").unwrap();
            }
            let text = format!("{room} #{i}");
            (handle.say(room, "bot", &text).unwrap(), text)
        })
        .collect()
}

fn entries(messages: &Value) -> Vec<(u64, String)> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_late_joiner_gets_the_latest_50() {
    let server = start(|_| {});
    let said = fill(&server.handle(), "dev", 120);
    let (mut ws, _) = chat_connect(server.local_addr(), "name=late");
    let joined = ask(&mut ws, json!({"type":"join","room":"dev","ref":1}));
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(entries(&joined["history"]), said[70..]);
    for m in joined["history"].as_array().unwrap() {
        assert_eq!(m["from"], "bot");
        assert!(
            m["ts"].as_u64().unwrap() > 1_600_000_000_000,
            "ts in ms: {m}"
        );
    }
}

#[test]
fn paging_before_walks_back_without_gaps_or_duplicates() {
    let server = start(|c| c.chat_rate = 0.0); // one request per page, back to back
    let said = fill(&server.handle(), "dev", 230);
    let (mut ws, _) = chat_connect(server.local_addr(), "name=reader");

    let mut pages: Vec<Vec<(u64, String)>> = Vec::new();
    let mut before: Option<u64> = None;
    // 230 / 37 -> 7 pages; the bound only stops a runaway loop.
    for page in 0..20 {
        let mut req = json!({"type":"history","room":"dev","limit":37,"ref":page});
        if let Some(b) = before {
            req["before"] = json!(b);
        }
        let answer = ask(&mut ws, req);
        assert_eq!(answer["type"], "history", "{answer}");
        let got = entries(&answer["messages"]);
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "page not ascending"
        );
        let more = answer["more"].as_bool().unwrap();
        before = got.first().map(|e| e.0);
        pages.push(got);
        if !more {
            break;
        }
    }
    assert_eq!(pages.len(), 7, "230 messages in pages of 37");
    let walked: Vec<(u64, String)> = pages.into_iter().rev().flatten().collect();
    assert_eq!(walked, said);

    // `limit` is capped at 200 and 0 gives an empty page.
    let answer = ask(
        &mut ws,
        json!({"type":"history","room":"dev","limit":5000,"ref":"cap"}),
    );
    assert_eq!(entries(&answer["messages"]), said[30..]);
    assert_eq!(answer["more"], true);
    let answer = ask(
        &mut ws,
        json!({"type":"history","room":"dev","limit":0,"ref":"zero"}),
    );
    assert_eq!(answer["messages"], json!([]));
}

#[test]
fn a_reconnecting_client_catches_up_with_after() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let handle = server.handle();
    fill(&handle, "dev", 10);
    let mut ws = chat_as(addr, "alice", "dev");
    let last = handle.say("dev", "bob", "the last alice saw").unwrap();
    let m = next_of_type(&mut ws, "message");
    assert_eq!(m["id"], last);
    drop(ws);
    assert!(wait_until(IO_TIMEOUT, || handle.chat_user_count() == 0));

    // 120 messages while alice is away: more than one default page of 50.
    let missed = fill(&handle, "dev", 120);
    let mut ws = chat_as(addr, "alice", "dev");
    let mut caught_up: Vec<(u64, String)> = Vec::new();
    let mut after = last;
    for page in 0..10 {
        let answer = ask(
            &mut ws,
            json!({"type":"history","room":"dev","after":after,"ref":page}),
        );
        let got = entries(&answer["messages"]);
        assert!(got.len() <= 50, "default page is 50");
        caught_up.extend(got);
        after = caught_up.last().map_or(after, |e| e.0);
        if answer["more"] == false {
            break;
        }
    }
    assert_eq!(caught_up, missed);
    // Both bounds: exactly the messages strictly between them.
    let answer = ask(
        &mut ws,
        json!({"type":"history","room":"dev","after":last,"before":missed[60].0,"limit":200,"ref":"both"}),
    );
    assert_eq!(entries(&answer["messages"]), missed[..60]);
}
