//! A sensor daemon that publishes JSON readings to a relay channel, for the page or any
//! WebSocket client to watch: `new WebSocket("ws://localhost:8080/relay/sensors")`.
//!
//! It reads the CPU temperature on Linux (a Raspberry Pi has it at
//! `/sys/class/thermal/thermal_zone0/temp`) and falls back to a synthetic wave elsewhere.
//!
//! ```sh
//! cargo run --example sensor                 # 127.0.0.1:8080, one reading a second
//! cargo run --example sensor -- 0.0.0.0:8080 # for the LAN
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn read_celsius(started: Instant) -> f64 {
    std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp")
        .ok()
        .and_then(|milli| milli.trim().parse::<f64>().ok())
        .map(|milli| milli / 1000.0)
        // No thermal zone (a VM, a laptop in a container): a slow, plausible wave.
        .unwrap_or_else(|| 45.0 + 5.0 * (started.elapsed().as_secs_f64() / 10.0).sin())
}

fn main() -> Result<(), wschat::Error> {
    env_logger::init();
    let mut config = wschat::Config::default();
    if let Some(addr) = std::env::args().nth(1) {
        config.addr = addr
            .parse()
            .map_err(|_| wschat::Error::Config(format!("not an address: {addr}")))?;
    }
    let server = wschat::Server::bind(config)?;
    println!(
        "sensor readings on ws://{}/relay/sensors",
        server.local_addr()
    );
    let handle = server.handle();
    let started = Instant::now();
    std::thread::spawn(move || {
        loop {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let reading = serde_json::json!({
                "sensor": "cpu_temp",
                "celsius": (read_celsius(started) * 10.0).round() / 10.0,
                "ts": ts,
            });
            if handle.publish_text("sensors", reading.to_string()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    server.join();
    Ok(())
}
