//! A client flooding a room (1000 messages at once) gets `rate_limited` errors and, past 50
//! refusals in a row, Close 1008; the others in the room are not disturbed, and see no more
//! of the flood than the rate allows (burst 20 + 10/s).

use crate::common::*;
use serde_json::json;
use std::time::Instant;

#[test]
fn a_flooder_is_limited_then_cut_and_the_room_goes_on() {
    let server = start(|_| {}); // default limits: 10 messages/s, bursts of 20
    let addr = server.local_addr();
    let mut olga = chat_as(addr, "olga", "dev");
    let mut bob = chat_as(addr, "bob", "dev");
    let mut fred = chat_as(addr, "fred", "dev");

    let t0 = Instant::now();
    let mut sent = 0;
    for i in 0..1000 {
        let req = json!({"type":"say","room":"dev","text":format!("flood {i}"),"ref":i});
        // Once cut, the server may reset the socket: stop sending then.
        if fred
            .send(tungstenite::Message::text(req.to_string()))
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    // The flooder's view: its accepted messages, then refusals, then the close.
    let (mut accepted, mut refused) = (0, 0);
    let code = loop {
        match fred.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let m: serde_json::Value = serde_json::from_str(&t).unwrap();
                match (m["type"].as_str(), m["code"].as_str()) {
                    (Some("message"), _) => accepted += 1,
                    (Some("error"), Some("rate_limited")) => refused += 1,
                    (Some("presence"), _) => {}
                    _ => panic!("flooder got {m}"),
                }
            }
            Ok(tungstenite::Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!("flooder: no close, but {e}"),
        }
    };
    assert_eq!(code, Some(1008), "after {sent} sent");
    // The burst passes; then 50 refusals in a row (more if a token came back mid-flood).
    assert!(accepted >= 20, "only {accepted} of the burst got through");
    assert!(
        refused >= 50,
        "{refused} rate_limited before the close, want 50"
    );

    // bob is not disturbed: his message goes through and olga sees it.
    let own = ask(
        &mut bob,
        json!({"type":"say","room":"dev","text":"still here","ref":"b"}),
    );
    assert_eq!(own["type"], "message", "{own}");
    let mut from_fred = 0;
    let marker = next_matching(&mut olga, "bob's message", |m| {
        if m["type"] == "message" && m["from"] == "fred" {
            from_fred += 1;
        }
        m["type"] == "message" && m["from"] == "bob"
    });
    let elapsed = t0.elapsed().as_secs_f64();
    assert_eq!(marker["text"], "still here");
    assert!(
        (from_fred as f64) <= 20.0 + 10.0 * elapsed + 1.0 && from_fred < 40,
        "olga saw {from_fred} flood messages in {elapsed:.2} s"
    );
    assert_eq!(
        from_fred, accepted,
        "olga and fred disagree on what got through"
    );
}
