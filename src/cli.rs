//! Command line → what to run. Hand-written: a dozen `--name value` options do not need a
//! parser crate, and one table gives both the parsing and `--help`.
//!
//! Every option can also come from the environment, by one rule over the same table (so a
//! systemd unit needs no long command line, only an `EnvironmentFile=`): `--max-connections N`
//! is `WSCHAT_MAX_CONNECTIONS=N` (`WSCHAT_` + the name in capitals, `-` as `_`). An option given
//! on the command line ignores its variable; an empty variable counts as unset (so a template
//! line `WSCHAT_WELCOME=` changes nothing). One exception: `WSCHAT_TOKENS` already holds
//! tokens themselves (see `main.rs`), so `--tokens FILE` is `WSCHAT_TOKENS_FILE`.

use std::time::Duration;

use wschat::Config;

/// What the command line asks for.
pub enum Command {
    Serve(Box<Config>),
    Bench(Vec<String>),
    /// `wschat token`: the secret file and the claims of an HS256 token to print.
    #[cfg(feature = "jwt")]
    Token(std::path::PathBuf, Box<wschat::TokenClaims>),
    Help(String),
    Version,
}

struct Opt {
    name: &'static str,
    value: &'static str,
    help: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("not a number: {v:?}"))
}

fn seconds(v: &str) -> Result<Duration, String> {
    let s: f64 = number(v)?;
    if !(0.0..=86_400.0).contains(&s) {
        return Err(format!("{v} seconds is out of range (0 to 86400)"));
    }
    Ok(Duration::from_secs_f64(s))
}

const OPTIONS: &[Opt] = &[
    Opt {
        name: "addr",
        value: "ADDR",
        help: "address to listen on [default: 127.0.0.1:8080; 0.0.0.0:8080 for a LAN]",
        set: |c, v| {
            c.addr = v
                .parse()
                .map_err(|_| format!("not an address (IP:PORT): {v:?}"))?;
            Ok(())
        },
    },
    Opt {
        name: "public",
        value: "DIR",
        help: "serve the page from this folder instead of the copy built into the binary",
        set: |c, v| {
            c.public_dir = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "welcome",
        value: "TEXT",
        help: "send TEXT to every new relay client [default: nothing]",
        set: |c, v| {
            c.welcome = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "max-message-size",
        value: "BYTES",
        help: "largest message a client may send; larger gets Close 1009 [default: 65536]",
        set: |c, v| {
            c.max_message_size = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "max-pending",
        value: "BYTES",
        help: "unsent bytes a client may fall behind before it is disconnected (1008) [default: 1048576]",
        set: |c, v| {
            c.max_pending_bytes = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "max-threads",
        value: "N",
        help: "most connection threads at once (idle connections hold none); over it new connections get 503 and parked ones wait [default: 1024]",
        set: |c, v| {
            c.max_connection_threads = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "max-buffered",
        value: "BYTES",
        help: "bytes held for delivery in all (queued messages and every client's backlog); past it senders wait and the clients furthest behind are disconnected (1008) [default: 134217728]",
        set: |c, v| {
            c.max_buffered_bytes = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "ping-interval",
        value: "SECS",
        help: "ping clients silent this long, drop them one interval later; 0 = off [default: 30]",
        set: |c, v| {
            c.ping_interval = seconds(v)?;
            Ok(())
        },
    },
    Opt {
        name: "write-delay",
        value: "MS",
        help: "when behind a broadcast to 256+ clients, gather frames this long for the next round; 0 = never [default: 2]",
        set: |c, v| {
            let ms: f64 = number(v)?;
            if !(0.0..=1000.0).contains(&ms) {
                return Err(format!("{v} ms is out of range (0 to 1000)"));
            }
            c.write_delay = Duration::from_secs_f64(ms / 1000.0);
            Ok(())
        },
    },
    Opt {
        name: "park-after",
        value: "SECS",
        help: "idle time after which a connection's thread ends and it waits in the parking thread; 0 = never [default: 5]",
        set: |c, v| {
            c.park_after = seconds(v)?;
            Ok(())
        },
    },
    Opt {
        name: "handshake-timeout",
        value: "SECS",
        help: "time for a request head to arrive [default: 5]",
        set: |c, v| {
            c.handshake_timeout = seconds(v)?;
            Ok(())
        },
    },
    Opt {
        name: "max-connections",
        value: "N",
        help: "connections served at once; more get 503 [default: 0 = open-files limit - 64]",
        set: |c, v| {
            c.max_connections = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "data-dir",
        value: "DIR",
        help: "keep chat history in DIR (appended before delivery, survives restarts) [default: memory only]",
        set: |c, v| {
            c.chat.data_dir = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "fsync",
        value: "POLICY",
        help: "always | batch (one fdatasync per dispatcher batch) | never [default: batch]",
        set: |c, v| {
            c.chat.fsync = v.parse()?;
            Ok(())
        },
    },
    Opt {
        name: "history",
        value: "N",
        help: "chat messages kept per room [default: 1000]",
        set: |c, v| {
            c.chat.history_per_room = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "max-text",
        value: "CHARS",
        help: "longest chat message, in characters [default: 4000]",
        set: |c, v| {
            c.chat.max_text_chars = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "max-rooms",
        value: "N",
        help: "chat rooms the server holds; new ones are refused beyond it, none is retired [default: 1000]",
        set: |c, v| {
            c.chat.max_rooms = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "max-rooms-per-client",
        value: "N",
        help: "chat rooms one connection may be in [default: 20]",
        set: |c, v| {
            c.chat.max_rooms_per_client = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "chat-rate",
        value: "PER_SEC",
        help: "chat messages per second per connection; 0 = unlimited [default: 10]",
        set: |c, v| {
            c.chat_rate = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "chat-burst",
        value: "N",
        help: "chat messages a connection may send back to back [default: 20]",
        set: |c, v| {
            c.chat_burst = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "tokens",
        value: "FILE",
        help: "require an access token (?token= or Authorization: Bearer) from FILE, lines `TOKEN [NAME]`; also $WSCHAT_TOKENS; re-read on SIGHUP",
        set: |c, v| {
            c.tokens_file = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "jwt-secret-file",
        value: "FILE",
        help: "also admit HS256 JWTs signed with the key in FILE (its bytes, one trailing newline ignored); re-read on SIGHUP",
        set: |c, v| {
            c.jwt_secret_file = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "jwt-public-key-file",
        value: "FILE",
        help: "also admit RS256/ES256 JWTs verified with the PEM public key(s) in FILE; re-read on SIGHUP",
        set: |c, v| {
            c.jwt_public_key_file = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "jwt-issuer",
        value: "ISS",
        help: "JWTs must have this `iss` [default: not checked]",
        set: |c, v| {
            c.jwt_issuer = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "jwt-audience",
        value: "AUD",
        help: "JWTs must have this `aud` [default: not checked]",
        set: |c, v| {
            c.jwt_audience = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "jwt-leeway",
        value: "SECS",
        help: "clock leeway for a JWT's exp and nbf [default: 30]",
        set: |c, v| {
            c.jwt_leeway = Duration::from_secs(seconds(v)?.as_secs());
            Ok(())
        },
    },
    Opt {
        name: "private-channel",
        value: "PATTERN",
        help: "relay channel (name or prefix-*) only JWTs whose `channels` claim matches may use; others get 403 (repeatable)",
        set: |c, v| {
            c.private_channels.push(v.into());
            Ok(())
        },
    },
    Opt {
        name: "private-room",
        value: "PATTERN",
        help: "chat room (name or prefix-*) only JWTs whose `rooms` claim matches may join, read or list; others get `forbidden` (repeatable)",
        set: |c, v| {
            c.chat.private_rooms.push(v.into());
            Ok(())
        },
    },
    Opt {
        name: "allow-origin",
        value: "URL",
        help: "also accept WebSockets from pages of this origin (repeatable; * = any) [default: same origin only]",
        set: |c, v| {
            c.allowed_origins.push(v.into());
            Ok(())
        },
    },
    Opt {
        name: "allowed-host",
        value: "NAME",
        help: "answer only requests whose Host is NAME (repeatable; against DNS rebinding on a LAN) [default: any]",
        set: |c, v| {
            c.allowed_hosts.push(v.into());
            Ok(())
        },
    },
    Opt {
        name: "trusted-proxy",
        value: "ADDR|CIDR",
        help: "believe Forwarded / X-Forwarded-For from this proxy (repeatable): the client address feeds --max-per-ip, logs and hooks [default: none]",
        set: |c, v| {
            c.trusted_proxies.push(v.parse()?);
            Ok(())
        },
    },
    Opt {
        name: "relay-protocol",
        value: "NAME",
        help: "subprotocol the relay accepts when a client offers it [default: none]",
        set: |c, v| {
            c.relay_protocol = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "max-per-ip",
        value: "N",
        help: "connections from one client address, IPv6 per /64 (loopback exempt unless behind --trusted-proxy); more get 503; 0 = no limit [default: 1000]",
        set: |c, v| {
            c.max_per_ip = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "relay-rate",
        value: "PER_SEC",
        help: "relay messages per second per connection, then reads slow down; 0 = unlimited [default: 1000]",
        set: |c, v| {
            c.relay_rate = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "relay-burst",
        value: "N",
        help: "relay messages a connection may send back to back [default: 2000]",
        set: |c, v| {
            c.relay_burst = number(v)?;
            Ok(())
        },
    },
    Opt {
        name: "api-key",
        value: "KEY",
        help: "enable POST /api/publish for callers presenting KEY (also $WSCHAT_API_KEY; visible in ps: prefer --api-key-file) [default: off]",
        set: |c, v| {
            c.api_key = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "redis",
        value: "URL",
        help: "join a cluster: every node with the same Redis (redis://[:PASSWORD@]HOST:PORT/DB) is one service (relay, chat, history); see README \"Several nodes\" [default: off, a single node]",
        set: |c, v| {
            c.redis = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "node-id",
        value: "ID",
        help: "this node's name in a cluster's logs and metrics [default: host-pid-starttime]",
        set: |c, v| {
            if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
                return Err("--node-id: 1 to 200 characters, no control characters".into());
            }
            c.node_id = Some(v.into());
            Ok(())
        },
    },
    Opt {
        name: "api-key-file",
        value: "FILE",
        help: "like --api-key, with the key read from FILE (its first line), so that it is not visible in ps",
        set: |c, v| {
            let text = std::fs::read_to_string(v).map_err(|e| format!("cannot read {v}: {e}"))?;
            let key = text.lines().next().unwrap_or("").trim();
            if key.is_empty() {
                return Err(format!("{v} holds no key"));
            }
            c.api_key = Some(key.to_string());
            Ok(())
        },
    },
    Opt {
        name: "read-buffer",
        value: "BYTES",
        help: "socket read buffer per connection [default: 4096]",
        set: |c, v| {
            c.read_buffer_size = number(v)?;
            Ok(())
        },
    },
];

/// Options whose variable is not `WSCHAT_` + the name: the name is taken for something else.
const ENV_EXCEPTIONS: &[(&str, &str)] = &[("tokens", "WSCHAT_TOKENS_FILE")];

/// The environment variable an option can also come from.
fn env_name(opt: &Opt) -> String {
    match ENV_EXCEPTIONS.iter().find(|(name, _)| *name == opt.name) {
        Some((_, var)) => (*var).to_string(),
        None => format!("WSCHAT_{}", opt.name.to_ascii_uppercase().replace('-', "_")),
    }
}

fn help() -> String {
    let mut out = format!(
        "wschat {} - a WebSocket chat and broadcast server without an async runtime\n\n\
         Usage:\n  wschat [serve] [OPTIONS]   run the server (the default)\n  \
         wschat bench SCENARIO ...  load-test a server (wschat bench --help)\n  \
         wschat token --secret-file FILE [--sub S] [--name N] [--exp SECS] [--rooms a,b]\n      \
         [--channels c,d] [--admin] [--iss ISS] [--aud AUD]   print an HS256 test token\n\n\
         Endpoints: GET / (chat page), ws://HOST/chat (JSON chat, PROTOCOL.md), ws://HOST/ (relay),\n\
         ws://HOST/relay/NAME, ws://HOST/echo, GET /healthz, GET /metrics\n\nOptions:\n",
        env!("CARGO_PKG_VERSION")
    );
    for o in OPTIONS {
        let flag = format!("--{} {}", o.name, o.value);
        out.push_str(&format!("  {flag:<28} {}\n", o.help));
    }
    out.push_str("  -h, --help                   print this help\n  -V, --version                print the version\n\n");
    out.push_str(
        "Environment: every option can also be set as WSCHAT_<OPTION>, the name in capitals with\n\
         `-` as `_` (WSCHAT_ADDR, WSCHAT_DATA_DIR, WSCHAT_MAX_CONNECTIONS, ...); the command line\n\
         wins, an empty value is ignored. Exception: --tokens FILE is WSCHAT_TOKENS_FILE\n\
         (WSCHAT_TOKENS holds tokens themselves).\n",
    );
    out.push_str("Logging: RUST_LOG=debug (default info).\n");
    out
}

/// Parses the arguments after the program name, with options missing from them taken from the
/// process environment (`WSCHAT_<OPTION>`, see the module doc).
pub fn parse(args: &[String]) -> Result<Command, String> {
    parse_with_env(args, |var| std::env::var_os(var))
}

/// [`parse`] with the environment as a function, so that tests need not change the process's.
fn parse_with_env(
    args: &[String],
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Command, String> {
    let mut args = args;
    match args.first().map(String::as_str) {
        Some("bench") => return Ok(Command::Bench(args[1..].to_vec())),
        #[cfg(feature = "jwt")]
        Some("token") => return token(&args[1..]),
        Some("serve") => args = &args[1..],
        _ => {}
    }
    let mut config = Config::default();
    let mut given: Vec<(&Opt, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        match arg {
            "-h" | "--help" => return Ok(Command::Help(help())),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?} (see --help)"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let opt = OPTIONS
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| format!("unknown option --{name} (see --help)"))?;
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("--{name} needs a value ({})", opt.value))?;
                i += 1;
                v.clone()
            }
        };
        given.push((opt, value));
    }
    // The environment first, for the options the command line leaves out; then the command
    // line in its order (a repeatable option like --allow-origin adds each of its values).
    for opt in OPTIONS {
        if given.iter().any(|(g, _)| g.name == opt.name) {
            continue;
        }
        let var = env_name(opt);
        let Some(value) = env(&var) else { continue };
        let value = value
            .into_string()
            .map_err(|_| format!("{var}: not valid UTF-8"))?;
        if value.is_empty() {
            continue;
        }
        (opt.set)(&mut config, &value).map_err(|e| format!("{var}: {e}"))?;
    }
    for (opt, value) in given {
        (opt.set)(&mut config, &value).map_err(|e| format!("--{}: {e}", opt.name))?;
    }
    Ok(Command::Serve(Box::new(config)))
}

/// `wschat token` arguments (help is in `help()`).
#[cfg(feature = "jwt")]
fn token(args: &[String]) -> Result<Command, String> {
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let mut claims = wschat::TokenClaims::default();
    let mut secret = None;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        i += 1;
        if flag == "--admin" {
            claims.admin = true;
            continue;
        }
        let value = args
            .get(i)
            .ok_or_else(|| format!("wschat token: {flag} needs a value"))?
            .clone();
        i += 1;
        match flag {
            "--secret-file" => secret = Some(std::path::PathBuf::from(value)),
            "--sub" => claims.sub = Some(value),
            "--name" => claims.name = Some(value),
            "--exp" => {
                let secs: u64 = number(&value)?;
                claims.lifetime = Duration::from_secs(secs);
            }
            "--rooms" => claims.rooms = list(&value),
            "--channels" => claims.channels = list(&value),
            "--iss" => claims.issuer = Some(value),
            "--aud" => claims.audience = Some(value),
            _ => return Err(format!("wschat token: unknown option {flag} (see --help)")),
        }
    }
    let secret = secret.ok_or("wschat token needs --secret-file FILE")?;
    Ok(Command::Token(secret, Box::new(claims)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_and_options() {
        let Ok(Command::Serve(c)) = parse(&[]) else {
            panic!("no args serves")
        };
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        let Ok(Command::Serve(c)) = parse(&args("serve --addr=0.0.0.0:9 --ping-interval 0.5"))
        else {
            panic!("serve with options")
        };
        assert_eq!(c.addr.to_string(), "0.0.0.0:9");
        assert_eq!(c.ping_interval, Duration::from_millis(500));
        let Ok(Command::Serve(c)) = parse(&args("--max-rooms 7 --max-rooms-per-client 2")) else {
            panic!("room limits")
        };
        assert_eq!((c.chat.max_rooms, c.chat.max_rooms_per_client), (7, 2));
        assert!(parse(&args("--max-rooms many")).is_err());
        assert_eq!(c.write_delay, Duration::from_millis(2), "the default");
        let Ok(Command::Serve(c)) = parse(&args("--write-delay 0.5")) else {
            panic!("write delay")
        };
        assert_eq!(c.write_delay, Duration::from_micros(500));
        for bad in ["1001", "-1", "NaN", "2ms"] {
            assert!(
                parse(&args(&format!("--write-delay {bad}"))).is_err(),
                "{bad}"
            );
        }
        assert!(parse(&args("--addr nope")).is_err());
        assert!(parse(&args("--bogus 1")).is_err());
        assert!(parse(&args("--addr")).is_err());
        assert!(matches!(parse(&args("bench fanout -c 3")), Ok(Command::Bench(a)) if a.len() == 3));
        let Ok(Command::Serve(c)) = parse(&args(
            "--jwt-secret-file s --jwt-issuer app --private-channel team-* --private-channel ops",
        )) else {
            panic!("jwt options")
        };
        assert_eq!(c.jwt_issuer.as_deref(), Some("app"));
        assert_eq!(c.private_channels, vec!["team-*", "ops"]);
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn token_subcommand() {
        let Ok(Command::Token(file, claims)) = parse(&args(
            "token --secret-file /s --sub 7 --rooms a,team-* --exp 60 --admin",
        )) else {
            panic!("token")
        };
        assert_eq!(file, std::path::PathBuf::from("/s"));
        assert_eq!(claims.sub.as_deref(), Some("7"));
        assert_eq!(claims.rooms, vec!["a", "team-*"]);
        assert_eq!(claims.lifetime, Duration::from_secs(60));
        assert!(claims.admin);
        assert!(parse(&args("token --sub 7")).is_err());
        assert!(parse(&args("token --secret-file")).is_err());
    }

    fn serve_with_env(cmdline: &str, vars: &[(&str, &str)]) -> Result<Box<Config>, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into());
        match parse_with_env(&args(cmdline), env)? {
            Command::Serve(c) => Ok(c),
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn every_option_comes_from_its_env_variable() {
        // One rule for all: WSCHAT_ + NAME with `-` as `_`, and each name is unique.
        let mut seen = Vec::new();
        for o in OPTIONS {
            let var = env_name(o);
            assert!(var.starts_with("WSCHAT_"), "{var}");
            assert!(!seen.contains(&var), "two options share {var}");
            seen.push(var);
        }
        assert_eq!(env_name(&OPTIONS[0]), "WSCHAT_ADDR");
        let c = serve_with_env(
            "",
            &[
                ("WSCHAT_ADDR", "0.0.0.0:8081"),
                ("WSCHAT_DATA_DIR", "/var/lib/wschat"),
                ("WSCHAT_MAX_CONNECTIONS", "5000"),
                ("WSCHAT_PING_INTERVAL", "2.5"),
                ("WSCHAT_TOKENS_FILE", "/etc/wschat/tokens"),
                ("WSCHAT_ALLOW_ORIGIN", "https://chat.example"),
            ],
        )
        .unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:8081");
        assert_eq!(
            c.chat.data_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/wschat"))
        );
        assert_eq!(c.max_connections, 5000);
        assert_eq!(c.ping_interval, Duration::from_millis(2500));
        assert_eq!(
            c.tokens_file.as_deref(),
            Some(std::path::Path::new("/etc/wschat/tokens"))
        );
        assert_eq!(c.allowed_origins, vec!["https://chat.example".to_string()]);
    }

    #[test]
    fn command_line_wins_over_env_and_empty_env_is_unset() {
        let c = serve_with_env(
            "--addr 127.0.0.1:9 --allow-origin https://a.example",
            &[
                ("WSCHAT_ADDR", "0.0.0.0:8081"),
                ("WSCHAT_ALLOW_ORIGIN", "https://b.example"),
                ("WSCHAT_WELCOME", ""),
                ("WSCHAT_HISTORY", "7"),
            ],
        )
        .unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:9");
        assert_eq!(c.allowed_origins, vec!["https://a.example".to_string()]);
        assert_eq!(c.welcome, None);
        assert_eq!(c.chat.history_per_room, 7);
        // WSCHAT_TOKENS is tokens, not a file name: it does not set --tokens.
        let c = serve_with_env("", &[("WSCHAT_TOKENS", "secret alice")]).unwrap();
        assert_eq!(c.tokens_file, None);
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let err = serve_with_env("", &[("WSCHAT_MAX_CONNECTIONS", "lots")]).unwrap_err();
        assert!(err.starts_with("WSCHAT_MAX_CONNECTIONS: "), "{err}");
        // ...but not when the command line gives the option.
        assert!(
            serve_with_env("--max-connections 3", &[("WSCHAT_MAX_CONNECTIONS", "lots")]).is_ok()
        );
    }

    #[test]
    fn help_lists_every_option_with_a_default_or_meaning() {
        let Ok(Command::Help(h)) = parse(&args("--help")) else {
            panic!("help")
        };
        for o in OPTIONS {
            assert!(h.contains(&format!("--{}", o.name)));
        }
    }
}
