//! The tutorials' "server pushes the time every second", embedded in a plain program.
//!
//! Run it and open a console on any page:
//! `new WebSocket("ws://localhost:8080").onmessage = (e) => console.log(e.data)`
//!
//! ```sh
//! cargo run --example clock              # listens on 127.0.0.1:8080
//! cargo run --example clock -- 127.0.0.1:0
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() -> Result<(), wschat::Error> {
    env_logger::init();
    let mut config = wschat::Config::default();
    if let Some(addr) = std::env::args().nth(1) {
        config.addr = addr
            .parse()
            .map_err(|_| wschat::Error::Config(format!("not an address: {addr}")))?;
    }
    let server = wschat::Server::bind(config)?;
    println!("clock listening on http://{}", server.local_addr());
    let handle = server.handle();
    std::thread::spawn(move || {
        loop {
            // Every client connected to ws://HOST/ (relay channel "") gets the time.
            if handle.publish_text("", utc_time()).is_err() {
                return; // the server shut down
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    server.join();
    Ok(())
}

/// `HH:MM:SS UTC`, without a date-time crate.
fn utc_time() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02} UTC")
}
