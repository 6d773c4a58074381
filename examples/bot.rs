//! A chat bot in the host program: it watches every room and answers `!time` with the time,
//! as user `timebot`. Open http://localhost:8080/, say `!time` in any room.
//!
//! ```sh
//! cargo run --example bot
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use wschat::ServerEvent;

fn main() -> Result<(), wschat::Error> {
    env_logger::init();
    let mut config = wschat::Config::default();
    if let Some(addr) = std::env::args().nth(1) {
        config.addr = addr
            .parse()
            .map_err(|_| wschat::Error::Config(format!("not an address: {addr}")))?;
    }
    // Room for 1024 unread events; the bot reads them as fast as they come.
    let server = wschat::Server::builder(config).events(1024).bind()?;
    println!("bot listening on http://{}", server.local_addr());
    let events = server.events().expect("built with events");
    let handle = server.handle();
    std::thread::spawn(move || {
        for event in events {
            if let ServerEvent::ChatMessage {
                room, from, text, ..
            } = event
            {
                if from != "timebot" && text.trim() == "!time" {
                    let secs = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let answer = format!(
                        "{from}: it is {:02}:{:02}:{:02} UTC",
                        (secs / 3600) % 24,
                        (secs / 60) % 60,
                        secs % 60
                    );
                    if let Err(e) = handle.say(&room, "timebot", &answer) {
                        eprintln!("bot: could not answer in {room}: {e}");
                    }
                }
            }
        }
    });
    server.join();
    Ok(())
}
