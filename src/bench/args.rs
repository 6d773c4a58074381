//! Command-line options of `wschat bench`, parsed by hand (no argument crate in the tree).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// C connections, S of them sending; every receiver measures latency and loss.
    Fanout,
    /// Round trips against an echo endpoint.
    Echo,
    /// A connection storm: handshakes per second and failures.
    Connect,
    /// Hold N idle connections and measure the server's memory per connection.
    Idle,
}

/// Who is expected to receive a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every other connection (wschat's `/`, node ws, tokio server).
    Relay,
    /// Every connection including the sender; payload inside wschat `/chat` JSON.
    Chat,
    /// Only the sender (echo endpoint).
    Echo,
}

/// Total send rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Messages per second over all senders.
    PerSec(f64),
    /// As fast as the in-flight window allows.
    Max,
}

/// The server to connect to, from a `ws://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `host[:port]` for the Host header.
    pub host: String,
    /// Request path, at least `/`.
    pub path: String,
}

/// Everything a run needs, defaults applied.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    /// One or more servers (a cluster's nodes); connection `i` goes to `targets[i % len]`.
    pub targets: Vec<Target>,
    pub mode: Mode,
    pub conns: usize,
    pub senders: usize,
    pub rate: Rate,
    pub window: u64,
    pub payload: usize,
    pub duration: Duration,
    pub drain: Duration,
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub connect_deadline: Duration,
    pub threads: usize,
    pub batch: Duration,
    pub server_pid: Option<u32>,
    pub metrics_url: Option<String>,
    pub json: bool,
    pub quiet: bool,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Print this text and exit successfully.
    Help(String),
    /// Run the benchmark.
    Run(Box<Options>),
}

/// Help text, listing every option with its default.
pub fn usage() -> String {
    "\
Usage: wschat bench <SCENARIO> [OPTIONS]

Synchronous WebSocket load generator: epoll over non-blocking sockets, a few threads for any
number of connections. Every message carries sender, sequence number and send time, so each
receiver measures latency, loss, duplicates and reordering.

Scenarios:
  fanout    C connections, S of them sending R msg/s in total for D seconds, then a drain
  echo      each connection sends, waits for its message back (window 1), sends again
  connect   open N connections, at most K handshakes in flight; handshakes/s and failures
  idle      open N connections, hold them D seconds; server memory per connection

Options (default in brackets; per scenario where it differs):
  -u, --url URL[,URL...]     server URL [ws://127.0.0.1:8080/; echo: ws://127.0.0.1:8080/echo];
                             repeat it (or give a comma-separated list) to spread the
                             connections over several servers, e.g. the nodes of a cluster:
                             connection i goes to URL i mod N (senders too), and a message
                             is expected by every receiver on every node (not for idle)
  -m, --mode relay|chat|echo who receives a message: relay = every other connection,
                             chat = everyone incl. the sender (wschat /chat JSON), echo = sender
                             [fanout: relay; echo: echo]
  -c, --conns N              connections [fanout 100, echo 1, connect 1000, idle 1000]
  -s, --senders S            sending connections, the first S opened [fanout 10; echo: all]
  -r, --rate R|max           total messages/s over all senders, or max [fanout 1000; echo max]
  -w, --window W             max messages in flight per sender with --rate max; acknowledged
                             when the last connection (relay) or the sender itself receives
                             it [fanout 64, echo 1]
  -p, --payload BYTES        text payload size, at least the ~40 header bytes [64]
  -d, --duration D           sending (fanout, echo) or holding (idle) time, e.g. 10, 10s,
                             500ms, 2m [10s]
      --drain D              wait after sending for late deliveries, ends early when all
                             arrived [2s]
  -k, --concurrency K        max handshakes in flight, so the listen backlog is not overrun [64]
      --connect-timeout D    per connection: TCP connect plus HTTP 101 [10s]
      --connect-deadline D   give up opening connections after this long [120s]
  -t, --threads T            worker threads, each with its own epoll and share of the
                             connections [2]
      --batch D              pause this long (e.g. 200us) after each busy epoll wait so that
                             more frames arrive per read: cuts the client's CPU per delivery
                             against servers that write one frame per syscall, adds up to D
                             to the measured latency [0]
      --server-pid PID       read the server's RSS (VmRSS) and CPU time from /proc/PID
                             (refused unless PID listens on a --url's port)
      --metrics-url URL      read the server's RSS from a Prometheus line
                             wschat_resident_memory_bytes [idle without --server-pid:
                             http://HOST:PORT/metrics of --url]
      --json                 print the summary as one JSON line on stdout (text on stderr)
  -q, --quiet                no progress line each second on stderr
  -h, --help                 this text

Ctrl-C (or SIGTERM) stops the run and prints the summary so far; a second one kills.
"
    .to_owned()
}

/// Parses a duration: `10`, `1.5`, `10s`, `250ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 10, 10s, 250ms, 100us, 2m)");
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.000_001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 || v * scale > 86_400.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Parses `ws://host[:port][/path]` and resolves the host.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("unsupported URL {url:?}: only ws:// (no TLS)"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    let with_port = if host.ends_with(']') || !host.contains(':') {
        format!("{host}:80")
    } else {
        host.to_owned()
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} resolves to no address"))?;
    Ok(Target {
        addr,
        host: host.to_owned(),
        path: path.to_owned(),
    })
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: expected a number, got {v:?}"))
}

/// Parses everything after `bench`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut scenario = None;
    let mut urls: Vec<String> = Vec::new();
    let mut mode = None;
    let mut conns = None;
    let mut senders = None;
    let mut rate = None;
    let mut window = None;
    let mut payload = 64;
    let mut duration = Duration::from_secs(10);
    let mut drain = Duration::from_secs(2);
    let mut concurrency = 64;
    let mut connect_timeout = Duration::from_secs(10);
    let mut connect_deadline = Duration::from_secs(120);
    let mut threads = 2;
    let mut batch = Duration::ZERO;
    let mut server_pid = None;
    let mut metrics_url = None;
    let mut json = false;
    let mut quiet = false;

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help(usage())),
            "-u" | "--url" => {
                let v = value()?;
                urls.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                        .map(String::from),
                );
            }
            "-m" | "--mode" => {
                mode = Some(match value()?.as_str() {
                    "relay" => Mode::Relay,
                    "chat" => Mode::Chat,
                    "echo" => Mode::Echo,
                    other => return Err(format!("--mode: relay, chat or echo, not {other:?}")),
                })
            }
            "-c" | "--conns" => conns = Some(number::<usize>(flag, &value()?)?),
            "-s" | "--senders" => senders = Some(number::<usize>(flag, &value()?)?),
            "-r" | "--rate" => {
                let v = value()?;
                rate = Some(if v == "max" {
                    Rate::Max
                } else {
                    let r: f64 = number(flag, &v)?;
                    if !(r > 0.0 && r.is_finite()) {
                        return Err(format!("--rate must be positive or max, not {v:?}"));
                    }
                    Rate::PerSec(r)
                })
            }
            "-w" | "--window" => window = Some(number::<u64>(flag, &value()?)?),
            "-p" | "--payload" => payload = number(flag, &value()?)?,
            "-d" | "--duration" => duration = parse_duration(&value()?)?,
            "--drain" => drain = parse_duration(&value()?)?,
            "-k" | "--concurrency" => concurrency = number(flag, &value()?)?,
            "--connect-timeout" => connect_timeout = parse_duration(&value()?)?,
            "--connect-deadline" => connect_deadline = parse_duration(&value()?)?,
            "-t" | "--threads" => threads = number(flag, &value()?)?,
            "--batch" => batch = parse_duration(&value()?)?,
            "--server-pid" => server_pid = Some(number(flag, &value()?)?),
            "--metrics-url" => metrics_url = Some(value()?),
            "--json" => json = true,
            "-q" | "--quiet" => quiet = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s:?} (see --help)")),
            s => {
                if scenario.is_some() {
                    return Err(format!("unexpected argument {s:?}"));
                }
                scenario = Some(match s {
                    "fanout" => Scenario::Fanout,
                    "echo" => Scenario::Echo,
                    "connect" => Scenario::Connect,
                    "idle" => Scenario::Idle,
                    other => {
                        return Err(format!(
                            "unknown scenario {other:?}: fanout, echo, connect or idle"
                        ));
                    }
                });
            }
        }
    }

    let scenario =
        scenario.ok_or_else(|| "missing scenario: fanout, echo, connect or idle".to_owned())?;
    let default_url = match scenario {
        Scenario::Echo => "ws://127.0.0.1:8080/echo",
        _ => "ws://127.0.0.1:8080/",
    };
    if urls.is_empty() {
        urls.push(default_url.to_owned());
    }
    let targets = urls
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    if scenario == Scenario::Idle && targets.len() > 1 {
        return Err("idle measures one server's memory: give one --url".to_owned());
    }
    let mode = mode.unwrap_or(match scenario {
        Scenario::Echo => Mode::Echo,
        _ => Mode::Relay,
    });
    let conns = conns.unwrap_or(match scenario {
        Scenario::Fanout => 100,
        Scenario::Echo => 1,
        Scenario::Connect | Scenario::Idle => 1000,
    });
    if conns == 0 {
        return Err("--conns must be at least 1".to_owned());
    }
    let senders = match scenario {
        Scenario::Fanout => senders.unwrap_or(10).min(conns),
        Scenario::Echo => senders.unwrap_or(conns).min(conns),
        Scenario::Connect | Scenario::Idle => 0,
    };
    let sending = matches!(scenario, Scenario::Fanout | Scenario::Echo);
    if sending && senders == 0 {
        return Err("--senders must be at least 1".to_owned());
    }
    if sending && mode == Mode::Relay && conns < 2 {
        return Err("relay mode needs at least 2 connections: a sender and a receiver".to_owned());
    }
    // Each receiver tracks each sender in 16 bytes (echo: only itself).
    if sending && mode != Mode::Echo && (conns as u64) * (senders as u64) > 20_000_000 {
        return Err(format!(
            "{conns} connections x {senders} senders is over 20M tracked pairs (320 MB): use \
             fewer senders"
        ));
    }
    let rate = rate.unwrap_or(match scenario {
        Scenario::Echo => Rate::Max,
        _ => Rate::PerSec(1000.0),
    });
    let window = window.unwrap_or(match scenario {
        Scenario::Echo => 1,
        _ => 64,
    });
    if window == 0 {
        return Err("--window must be at least 1".to_owned());
    }
    if payload > 16 << 20 {
        return Err("--payload over 16 MiB".to_owned());
    }
    if threads == 0 || threads > 64 {
        return Err("--threads must be 1..=64".to_owned());
    }
    if concurrency == 0 {
        return Err("--concurrency must be at least 1".to_owned());
    }
    if scenario == Scenario::Idle && server_pid.is_none() && metrics_url.is_none() {
        metrics_url = Some(format!("http://{}/metrics", targets[0].addr));
    }
    Ok(Command::Run(Box::new(Options {
        scenario,
        targets,
        mode,
        conns,
        senders,
        rate,
        window,
        payload,
        duration,
        drain,
        concurrency,
        connect_timeout,
        connect_deadline,
        threads,
        batch,
        server_pid,
        metrics_url,
        json,
        quiet,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &str) -> Options {
        let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        match parse(&args).unwrap() {
            Command::Run(o) => *o,
            Command::Help(_) => panic!("help"),
        }
    }

    fn err(args: &str) -> String {
        let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        parse(&args).unwrap_err()
    }

    #[test]
    fn fanout_defaults() {
        let o = run("fanout");
        assert_eq!(o.scenario, Scenario::Fanout);
        assert_eq!(o.targets[0].addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(o.targets[0].path, "/");
        assert_eq!((o.conns, o.senders, o.window, o.payload), (100, 10, 64, 64));
        assert_eq!(o.rate, Rate::PerSec(1000.0));
        assert_eq!(o.mode, Mode::Relay);
        assert_eq!(o.duration, Duration::from_secs(10));
        assert!(!o.json && !o.quiet);
    }

    #[test]
    fn echo_and_idle_defaults() {
        let o = run("echo");
        assert_eq!((o.conns, o.senders, o.window), (1, 1, 1));
        assert_eq!((o.mode, o.rate), (Mode::Echo, Rate::Max));
        assert_eq!(o.targets[0].path, "/echo");
        let o = run("idle -c 10000 --url ws://127.0.0.1:9001");
        assert_eq!((o.conns, o.senders), (10000, 0));
        assert_eq!(
            o.metrics_url.as_deref(),
            Some("http://127.0.0.1:9001/metrics")
        );
        let o = run("idle --server-pid 42");
        assert_eq!((o.server_pid, o.metrics_url), (Some(42), None));
    }

    #[test]
    fn every_option_parses_in_both_spellings() {
        let o = run(
            "fanout --url ws://localhost:9000/chat --mode chat -c 1000 -s 1 -r 200 -w 8 -p 128 \
             -d 1.5 --drain=500ms -k 32 --connect-timeout 3s --connect-deadline 1m -t 3 \
             --batch 150us --server-pid 7 --metrics-url http://x/metrics --json -q",
        );
        assert_eq!(o.targets[0].addr.port(), 9000);
        assert_eq!(o.targets[0].host, "localhost:9000");
        assert_eq!(o.targets[0].path, "/chat");
        assert_eq!(o.mode, Mode::Chat);
        assert_eq!((o.conns, o.senders, o.window, o.payload), (1000, 1, 8, 128));
        assert_eq!(o.rate, Rate::PerSec(200.0));
        assert_eq!(o.duration, Duration::from_millis(1500));
        assert_eq!(o.drain, Duration::from_millis(500));
        assert_eq!((o.concurrency, o.threads), (32, 3));
        assert_eq!(o.batch, Duration::from_micros(150));
        assert_eq!(o.connect_timeout, Duration::from_secs(3));
        assert_eq!(o.connect_deadline, Duration::from_secs(60));
        assert_eq!(o.server_pid, Some(7));
        assert_eq!(o.metrics_url.as_deref(), Some("http://x/metrics"));
        assert!(o.json && o.quiet);
        assert_eq!(run("fanout --rate max").rate, Rate::Max);
        assert_eq!(run("fanout -s 500 -c 20").senders, 20);
    }

    #[test]
    fn several_urls_repeated_or_listed_in_order() {
        let o = run("fanout --url ws://127.0.0.1:9001/ -u ws://127.0.0.1:9002/a,ws://[::1]:9003/");
        let ports: Vec<u16> = o.targets.iter().map(|t| t.addr.port()).collect();
        assert_eq!(ports, [9001, 9002, 9003]);
        assert_eq!(o.targets[1].path, "/a");
        assert_eq!(o.targets[2].host, "[::1]:9003");
        assert_eq!(run("fanout").targets.len(), 1);
        assert!(err("idle -u ws://127.0.0.1:1/ -u ws://127.0.0.1:2/").contains("one --url"));
        assert!(err("fanout -u ws://127.0.0.1:1/,http://x/").contains("only ws://"));
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(err("").contains("missing scenario"));
        assert!(err("storm").contains("unknown scenario"));
        assert!(err("fanout --bogus").contains("unknown option"));
        assert!(err("fanout -c").contains("needs a value"));
        assert!(err("fanout -c ten").contains("expected a number"));
        assert!(err("fanout -r 0").contains("positive"));
        assert!(err("fanout -c 1").contains("at least 2"));
        assert!(err("fanout -d 5x").contains("invalid duration"));
        assert!(err("fanout --url http://x/").contains("only ws://"));
        assert!(err("fanout --mode fast").contains("relay, chat or echo"));
        assert!(err("fanout -c 10000 -s 10000").contains("tracked pairs"));
        assert!(matches!(
            parse(&["--help".to_owned()]),
            Ok(Command::Help(_))
        ));
    }

    #[test]
    fn help_lists_every_option() {
        let help = usage();
        for flag in [
            "--url",
            "--mode",
            "--conns",
            "--senders",
            "--rate",
            "--window",
            "--payload",
            "--duration",
            "--drain",
            "--concurrency",
            "--connect-timeout",
            "--connect-deadline",
            "--threads",
            "--batch",
            "--server-pid",
            "--metrics-url",
            "--json",
            "--quiet",
            "--help",
        ] {
            assert!(help.contains(flag), "{flag}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("ms").is_err());
    }
}
