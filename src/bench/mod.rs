//! `wschat bench`: a synchronous WebSocket load generator for wschat and any server that relays
//! or echoes text.
//!
//! Like the server it has no async runtime: a few worker threads, each with its own epoll over a
//! share of the non-blocking connections (one process drives 10,000+), the library's frame
//! codec (headers decoded in place, no allocation per frame), and bench messages that carry
//! sender, sequence number and send time so that every receiver measures latency, loss,
//! duplicates and reordering. See [`run_from_args`] and `wschat bench --help`.
//!
//! A module of the `wschat` binary, not of the library: embedding programs compile none of it.
//! The frame codec it shares with the server and the tests is `src/frame.rs`, reached through
//! `wschat::internals::frame`.

mod args;
mod hist;
mod mask;
mod owner;
mod payload;
mod sys;
mod track;
mod worker;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use args::{Command, Mode, Options, Rate, Scenario};
use hist::Histogram;
use worker::{FAILURE_KINDS, PHASE_DRAIN, PHASE_SEND, PHASE_STOP, Shared, counter, now_ns};

/// Runs `wschat bench` with `args` = everything after `bench`, e.g.
/// `["fanout", "--conns", "100", "--rate", "max"]`.
///
/// Prints a progress line each second on stderr (unless `--quiet`) and the summary on stdout
/// (`--json`: one JSON line on stdout, the text summary on stderr). `--help` prints the options
/// and returns `Ok`. SIGINT/SIGTERM end the run early and still print the summary.
///
/// # Errors
/// Bad arguments, a server that cannot be reached at all, or a failure to create threads or
/// epoll instances; the message is meant for the user.
///
/// For example (100 connections to a relay, 10 of them sending as fast as the window allows,
/// for 5 s): `wschat bench fanout --url ws://127.0.0.1:8080/ -c 100 -s 10 --rate max -d 5`.
pub fn run_from_args(args: &[String]) -> Result<(), String> {
    let opts = match args::parse(args)? {
        Command::Help(text) => {
            print!("{text}");
            return Ok(());
        }
        Command::Run(opts) => *opts,
    };
    sys::install_interrupt_handler();
    let report = run(opts)?;
    if report.json {
        eprint!("{}", report.text);
        println!("{}", report.value);
    } else {
        print!("{}", report.text);
    }
    Ok(())
}

struct Report {
    json: bool,
    value: serde_json::Value,
    text: String,
}

/// Counters and histograms summed over the workers.
struct Totals {
    c: [u64; counter::COUNT],
    latency: Histogram,
    handshake: Histogram,
}

impl Totals {
    fn of(shared: &Shared) -> Self {
        let mut t = Totals {
            c: [0; counter::COUNT],
            latency: Histogram::default(),
            handshake: Histogram::default(),
        };
        for w in &shared.workers {
            for (sum, c) in t.c.iter_mut().zip(w.counters.iter()) {
                *sum += c.load(Relaxed);
            }
            t.latency.merge(&w.latency.lock());
            t.handshake.merge(&w.handshake.lock());
        }
        t
    }

    fn failed(&self) -> u64 {
        self.c[counter::FAIL_BASE..].iter().sum()
    }
}

/// Prints a progress line each second.
struct Progress {
    quiet: bool,
    start: Instant,
    next: Instant,
    last_sent: u64,
    last_received: u64,
    last_at: Instant,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Progress {
            quiet,
            start: now,
            next: now + Duration::from_secs(1),
            last_sent: 0,
            last_received: 0,
            last_at: now,
        }
    }

    fn tick(&mut self, shared: &Shared, what: &str) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        if self.quiet {
            return;
        }
        let t = Totals::of(shared);
        let secs = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let sent = t.c[counter::SENT];
        let received = t.c[counter::RECEIVED];
        eprintln!(
            "[{:>4.0}s] {what:<7} conns {}/{} (failed {})  sent/s {:.0}  delivered/s {:.0}  p99 {}",
            now.duration_since(self.start).as_secs_f64(),
            shared.open.load(Relaxed),
            shared.opts.conns,
            t.failed(),
            (sent - self.last_sent) as f64 / secs,
            (received - self.last_received) as f64 / secs,
            ms(t.latency.quantile(0.99)),
        );
        self.last_sent = sent;
        self.last_received = received;
        self.last_at = now;
    }
}

fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

fn ms_value(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// Sleeps up to 10 ms, less if `until` comes sooner.
fn nap(until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    thread::sleep(left.min(Duration::from_millis(10)));
}

/// Sleeps up to 1 ms, less if `until` comes sooner: the drain's check, so that it ends soon
/// after the last delivery is published (workers publish every 2 ms while draining).
fn nap_briefly(until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    thread::sleep(left.min(Duration::from_millis(1)));
}

fn run(opts: Options) -> Result<Report, String> {
    // Check every server is there before spawning anything: a clear error beats 1000 failures.
    for target in &opts.targets {
        TcpStream::connect_timeout(&target.addr, Duration::from_secs(3))
            .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
    }
    if let Some(pid) = opts.server_pid {
        check_server_pid(pid, &opts)?;
    }

    let rss_before = match opts.scenario {
        Scenario::Idle => Some(server_rss(&opts)?),
        _ => None,
    };
    let run_id = RandomState::new().hash_one(now_ns()) as u32;
    let shared = Arc::new(Shared::new(opts, run_id));
    let opts = &shared.opts;
    let t0 = now_ns();
    let mut handles = Vec::new();
    for index in 0..opts.threads {
        let s = Arc::clone(&shared);
        let h = thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || worker::run(s, index))
            .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        handles.push(h);
    }
    let mut progress = Progress::new(opts.quiet);

    // Phase 1: open every connection (bounded in flight by the workers).
    let deadline = Instant::now() + opts.connect_deadline;
    loop {
        let t = Totals::of(&shared);
        let done = t.c[counter::CONNECTED] + t.failed() >= opts.conns as u64;
        if done || sys::interrupted() || Instant::now() >= deadline {
            break;
        }
        progress.tick(&shared, "connect");
        nap(deadline);
    }
    let connected_at = Instant::now();
    let connect_ns = shared.last_connect_ns.load(Relaxed).saturating_sub(t0);
    let open_after_connect = shared.open.load(Relaxed);

    let mut sending = None;
    let mut idle = None;
    match opts.scenario {
        Scenario::Connect => {}
        Scenario::Idle => {
            let until = connected_at + opts.duration;
            while Instant::now() < until && !sys::interrupted() {
                progress.tick(&shared, "hold");
                nap(until);
            }
            let after = server_rss(opts)?;
            idle = Some((rss_before.unwrap_or(0), after, shared.open.load(Relaxed)));
        }
        Scenario::Fanout | Scenario::Echo => {
            if open_after_connect == 0 {
                eprintln!("wschat bench: no connection opened; nothing to send");
            } else if !sys::interrupted() {
                sending = Some(send_phase(&shared, &mut progress));
            }
        }
    }
    shared.phase.store(PHASE_STOP, Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| "a worker thread panicked".to_owned())??;
    }
    let totals = Totals::of(&shared);
    Ok(report(
        &shared,
        &totals,
        connect_ns,
        open_after_connect,
        sending,
        idle,
    ))
}

/// What the send phase measured besides the counters.
struct SendWindow {
    send_ns: u64,
    drain_ns: u64,
    /// From the first send to the last delivery.
    delivery_ns: u64,
    client_cpu: Option<f64>,
    server_cpu: Option<f64>,
}

fn send_phase(shared: &Shared, progress: &mut Progress) -> SendWindow {
    let opts = &shared.opts;
    shared.choose_observers();
    let cpu_client = cpu_seconds("self");
    let cpu_server = opts.server_pid.and_then(|p| cpu_seconds(&p.to_string()));
    let start = now_ns();
    shared.send_start_ns.store(start, Relaxed);
    shared.phase.store(PHASE_SEND, Release);
    let until = Instant::now() + opts.duration;
    while Instant::now() < until && !sys::interrupted() {
        progress.tick(shared, "send");
        nap(until);
    }
    shared.phase.store(PHASE_DRAIN, Relaxed);
    let send_end = now_ns();
    // Drain: until every expected delivery arrived, the drain time is up (the bound: a lost
    // message never arrives), or Ctrl-C. `EXPECTED` is final only once every worker has
    // published its last sends: comparing before that (workers publish every 50 ms while
    // sending) could find the deliveries equal to a stale expected count and stop while the
    // last sends were still in flight, reporting them lost (issue 14).
    let until = Instant::now() + opts.drain;
    while Instant::now() < until && !sys::interrupted() {
        // Acquire: pairs with each worker's Release increment after publishing its counters.
        let all_published = shared.drained_workers.load(Acquire) == opts.threads;
        let t = Totals::of(shared);
        if all_published && t.c[counter::RECEIVED] >= t.c[counter::EXPECTED] {
            break;
        }
        progress.tick(shared, "drain");
        nap_briefly(until);
    }
    let end = now_ns();
    let wall = (end - start) as f64 / 1e9;
    let pct = |before: Option<f64>, after: Option<f64>| Some((after? - before?) / wall * 100.0);
    SendWindow {
        send_ns: send_end - start,
        drain_ns: end - send_end,
        delivery_ns: shared.last_delivery_ns.load(Relaxed).saturating_sub(start),
        client_cpu: pct(cpu_client, cpu_seconds("self")),
        server_cpu: pct(
            cpu_server,
            opts.server_pid.and_then(|p| cpu_seconds(&p.to_string())),
        ),
    }
}

fn report(
    shared: &Shared,
    t: &Totals,
    connect_ns: u64,
    open_after_connect: u64,
    sending: Option<SendWindow>,
    idle: Option<(u64, u64, u64)>,
) -> Report {
    let opts = &shared.opts;
    let c = &t.c;
    let connected = c[counter::CONNECTED];
    let connect_secs = connect_ns as f64 / 1e9;
    let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let failures: serde_json::Map<String, serde_json::Value> = FAILURE_KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| c[counter::FAIL_BASE + i] > 0)
        .map(|(i, k)| ((*k).to_owned(), json!(c[counter::FAIL_BASE + i])))
        .collect();
    let scenario = format!("{:?}", opts.scenario).to_lowercase();
    let urls: Vec<String> = opts
        .targets
        .iter()
        .map(|t| format!("ws://{}{}", t.host, t.path))
        .collect();
    let mut v = json!({
        "scenario": scenario,
        // One URL as before; several (connections spread round-robin) joined with commas, as
        // --url accepts them, and listed in `urls`.
        "url": urls.join(","),
        "urls": urls,
        "mode": format!("{:?}", opts.mode).to_lowercase(),
        "threads": opts.threads,
        "conns": opts.conns,
        "connected": connected,
        "open_after_connect": open_after_connect,
        "connect_failures": failures,
        "not_started": c[counter::SKIPPED],
        "dropped": c[counter::DROPPED],
        "connect_secs": connect_secs,
        "handshakes_per_sec": per_sec(connected, connect_secs).round(),
        "handshake_ms": {
            "p50": ms_value(t.handshake.quantile(0.5)),
            "p90": ms_value(t.handshake.quantile(0.9)),
            "p99": ms_value(t.handshake.quantile(0.99)),
            "max": ms_value(t.handshake.max()),
            // With K handshakes in flight, handshakes/s is about K / mean: the mean, not the
            // median, is what the rate shows.
            "mean": ms_value(t.handshake.mean()),
        },
        "interrupted": sys::interrupted(),
    });
    let mut text = format!(
        "wschat bench {scenario} -> {} ({} threads)\n\
         connections   {connected}/{} open in {connect_secs:.2} s ({:.0} handshakes/s, \
         handshake p50 {} p99 {}), failed {}{}, dropped later {}\n",
        urls.join(" "),
        opts.threads,
        opts.conns,
        per_sec(connected, connect_secs),
        ms(t.handshake.quantile(0.5)),
        ms(t.handshake.quantile(0.99)),
        t.failed(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(" {}", serde_json::Value::Object(failures.clone()))
        },
        c[counter::DROPPED],
    );

    if let Some(s) = sending {
        let sent = c[counter::SENT];
        let expected = c[counter::EXPECTED];
        let received = c[counter::RECEIVED];
        let lost = expected.saturating_sub(received);
        let send_secs = s.send_ns as f64 / 1e9;
        let delivery_secs = s.delivery_ns as f64 / 1e9;
        let lat = &t.latency;
        let rate = match opts.rate {
            Rate::PerSec(r) => json!(r),
            Rate::Max => json!("max"),
        };
        let fields = json!({
            "senders": opts.senders,
            "rate": rate,
            "window": (opts.rate == Rate::Max).then_some(opts.window),
            "payload": opts.payload,
            "duration_secs": send_secs,
            "drain_secs": s.drain_ns as f64 / 1e9,
            "sent": sent,
            "sent_per_sec": per_sec(sent, send_secs).round(),
            "expected": expected,
            "received": received,
            "lost": lost,
            "loss_pct": if expected > 0 { lost as f64 * 100.0 / expected as f64 } else { 0.0 },
            "duplicated": c[counter::DUPLICATE],
            "reordered": c[counter::REORDERED],
            "other_frames": c[counter::FOREIGN],
            "sender_stalls": c[counter::STALLED],
            "client_reads": c[counter::READS],
            "client_epoll_waits": c[counter::WAITS],
            "bytes_in": c[counter::BYTES_IN],
            "deliveries_per_sec": per_sec(received, delivery_secs).round(),
            "latency_ms": {
                "p50": ms_value(lat.quantile(0.5)),
                "p90": ms_value(lat.quantile(0.9)),
                "p99": ms_value(lat.quantile(0.99)),
                "max": ms_value(lat.max()),
                "mean": ms_value(lat.mean()),
            },
            "client_cpu_pct": s.client_cpu.map(|p| p.round()),
            "server_cpu_pct": s.server_cpu.map(|p| p.round()),
        });
        merge(&mut v, fields);
        let what = if opts.mode == Mode::Echo {
            "round trips"
        } else {
            "deliveries"
        };
        text += &format!(
            "sent          {sent} by {} senders in {send_secs:.2} s ({:.0}/s, rate {}, \
             payload {} B)\n\
             {what:<13} {received}/{expected} expected ({:.0}/s), lost {lost}, \
             duplicated {}, reordered {}\n\
             latency       p50 {}  p90 {}  p99 {}  max {}\n\
             cpu           client {}  server {}  (client: {:.1} deliveries per read, {} reads, \
             {} epoll waits)\n",
            opts.senders,
            per_sec(sent, send_secs),
            match opts.rate {
                Rate::PerSec(r) => format!("{r}/s"),
                Rate::Max => format!("max, window {}", opts.window),
            },
            opts.payload,
            per_sec(received, delivery_secs),
            c[counter::DUPLICATE],
            c[counter::REORDERED],
            ms(lat.quantile(0.5)),
            ms(lat.quantile(0.9)),
            ms(lat.quantile(0.99)),
            ms(lat.max()),
            s.client_cpu.map_or("-".to_owned(), |p| format!("{p:.0}%")),
            s.server_cpu
                .map_or("- (no --server-pid)".to_owned(), |p| format!("{p:.0}%")),
            received as f64 / c[counter::READS].max(1) as f64,
            c[counter::READS],
            c[counter::WAITS],
        );
    }
    if let Some((before, after, open)) = idle {
        let per_conn = after.saturating_sub(before).checked_div(open).unwrap_or(0);
        merge(
            &mut v,
            json!({
                "held_secs": opts.duration.as_secs_f64(),
                "server_rss_before": before,
                "server_rss_after": after,
                "held_conns": open,
                "bytes_per_conn": per_conn,
            }),
        );
        text += &format!(
            "server memory RSS {:.1} MiB -> {:.1} MiB with {open} connections held: \
             {:.1} KiB per connection\n",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per_conn as f64 / 1024.0,
        );
    }
    if sys::interrupted() {
        text += "(interrupted: summary so far)\n";
    }
    Report {
        json: opts.json,
        value: v,
        text,
    }
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// Refuses a `--server-pid` that serves none of the targets' ports: its memory and CPU would be
/// reported as the server's. A process whose descriptors cannot be read is measured with a
/// warning (that needs another user's process, and root is not required to run the bench).
fn check_server_pid(pid: u32, opts: &Options) -> Result<(), String> {
    let mut unknown = None;
    for target in &opts.targets {
        match owner::holds_listener(pid, target.addr.port())? {
            owner::Owner::Yes => return Ok(()),
            owner::Owner::No => {}
            owner::Owner::Unknown(why) => unknown = Some(why),
        }
    }
    if let Some(why) = unknown {
        eprintln!("wschat bench: cannot check that --server-pid {pid} is the server ({why})");
        return Ok(());
    }
    let ports: Vec<String> = opts
        .targets
        .iter()
        .map(|t| t.addr.port().to_string())
        .collect();
    Err(format!(
        "--server-pid {pid} is not listening on port {}: is it the server's PID?",
        ports.join(" or ")
    ))
}

/// The server's resident memory, from `/proc/PID/status` or the metrics endpoint.
fn server_rss(opts: &Options) -> Result<u64, String> {
    if let Some(pid) = opts.server_pid {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
        return vm_rss(&status).ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"));
    }
    let url = opts
        .metrics_url
        .as_deref()
        .ok_or("idle needs --server-pid or --metrics-url")?;
    metrics_rss(url)
}

/// VmRSS in bytes from the text of `/proc/PID/status`.
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `wschat_resident_memory_bytes` from a Prometheus text endpoint (plain HTTP/1.0 GET).
fn metrics_rss(url: &str) -> Result<u64, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--metrics-url {url:?}: only http://"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = args::parse_url(&format!("ws://{host}/"))?.addr;
    let fail = |e: std::io::Error| format!("cannot read {url}: {e} (give --server-pid instead)");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(fail)?;
    let mut body = String::new();
    s.take(4 << 20).read_to_string(&mut body).map_err(fail)?;
    metric_value(&body, "wschat_resident_memory_bytes")
        .ok_or_else(|| format!("{url} has no wschat_resident_memory_bytes line"))
}

fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = rest.strip_prefix(' ').or_else(|| {
            // A labelled line: name{...} value
            rest.starts_with('{')
                .then(|| rest.rsplit_once(' ').map(|(_, v)| v))?
        })?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// User plus system CPU seconds of `pid` ("self" for this process) from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_ticks(&stat).map(|t| t as f64 / sys::clock_ticks_per_sec() as f64)
}

fn cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the parenthesised command name (which may contain spaces): state is field 3,
    // utime 14 and stime 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_and_cpu_ticks() {
        let status = "Name:\tnode\nVmPeak:\t 1000 kB\nVmRSS:\t   51200 kB\nThreads: 7\n";
        assert_eq!(vm_rss(status), Some(51200 * 1024));
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert!(cpu_seconds("self").is_some());
    }

    #[test]
    fn reads_prometheus_lines() {
        let text = "# HELP x\nwschat_resident_memory_bytes_total 1\n\
                    wschat_resident_memory_bytes 1.2345e7\nother 3\n";
        assert_eq!(
            metric_value(text, "wschat_resident_memory_bytes"),
            Some(12_345_000)
        );
        assert_eq!(metric_value("a{b=\"c\"} 42\n", "a"), Some(42));
        assert_eq!(metric_value("b 1\n", "a"), None);
    }
}
