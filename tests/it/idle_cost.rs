//! 1000 idle connections cost no periodic wake-ups: across every thread of the process, the
//! number of context switches during an idle second stays far below one per connection.

use crate::common::*;
use std::time::Duration;

/// Voluntary + involuntary context switches of every thread of this process so far.
fn context_switches() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        for line in status.lines() {
            if line.contains("ctxt_switches:") {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
    }
    total
}

#[test]
fn a_thousand_idle_connections_do_not_wake_the_server() {
    // Measures the whole process: alone in a child, not beside the other tests' threads.
    if !isolated(
        module_path!(),
        "a_thousand_idle_connections_do_not_wake_the_server",
    ) {
        return;
    }
    let server = start(|_| {}); // default 30 s heartbeat: no tick inside the window
    let addr = server.local_addr();
    let handle = server.handle();
    let clients: Vec<Client> = (0..1000).map(|_| connect(addr, "/")).collect();
    assert!(wait_until(IO_TIMEOUT, || handle.connection_count() == 1000));
    // Let the handshakes' last bookkeeping settle (bounded: until two reads agree).
    let mut before = context_switches();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = context_switches();
        if now - before < 20 {
            before = now;
            break;
        }
        before = now;
    }
    // The measurement window itself: idle time is what is being measured.
    std::thread::sleep(Duration::from_secs(1));
    let switches = context_switches() - before;
    println!("context switches in 1 s with 1000 idle connections: {switches}");
    // A per-connection timer of any period under 1 s would cost >= 1000 here.
    assert!(switches < 100, "{switches} context switches while idle");
    drop(clients);
}
