//! The `wschat` binary: arguments in, server (or bench client) out, errors to an exit code.
//!
//! The load tester (`wschat bench`, src/bench/) is a module of the binary, not of the library:
//! programs that embed wschat compile none of it.

// As in the library: the bench's OS wrapper (src/bench/sys.rs) opts in with a module-level
// allow, each unsafe block with its SAFETY comment.
#![deny(unsafe_code)]

mod bench;
mod cli;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Command::Serve(config)) => serve(*config),
        Ok(Command::Bench(args)) => match bench::run_from_args(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wschat bench: {e}");
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "jwt")]
        Ok(Command::Token(secret, claims)) => match wschat::sign_token(&secret, &claims) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wschat token: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Command::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("wschat {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("wschat: {msg}");
            ExitCode::from(2)
        }
    }
}

fn serve(mut config: wschat::Config) -> ExitCode {
    // Tokens may also come from the environment (a systemd unit, a container secret): the
    // file's format, with commas or newlines between entries.
    if let Ok(env) = std::env::var("WSCHAT_TOKENS") {
        // Set, even empty: tokens are required (an empty list admits nobody).
        config.require_token = true;
        for entry in env
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (token, name) = match entry.split_once(char::is_whitespace) {
                Some((t, n)) => (t.to_string(), Some(n.trim().to_string())),
                None => (entry.to_string(), None),
            };
            config.tokens.push((token, name));
        }
    }
    // Before any thread exists, so that every thread inherits the blocked mask and only the
    // signal thread below receives SIGINT/SIGTERM/SIGHUP.
    if let Err(e) = wschat::block_shutdown_signals() {
        eprintln!("wschat: cannot set up signal handling: {e}");
        return ExitCode::FAILURE;
    }
    if config.api_key.is_none() {
        config.api_key = std::env::var("WSCHAT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = wschat::raise_fd_limit() {
        log::warn!("could not raise the open-files limit: {e}");
    }
    let server = match wschat::Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("wschat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    println!("wschat listening on http://{addr} (chat page at /, WebSocket relay at ws://{addr}/)");
    let handle = server.handle();
    let signals = std::thread::Builder::new()
        .name("wschat-signals".into())
        .spawn(move || {
            let mut stopping = false;
            loop {
                match wschat::wait_signal() {
                    Ok(wschat::Signal::Terminate) if stopping => {
                        eprintln!("wschat: second signal, exiting now");
                        std::process::exit(1);
                    }
                    Ok(wschat::Signal::Terminate) => {
                        stopping = true;
                        handle.shutdown();
                    }
                    Ok(wschat::Signal::Hangup) => match handle.reload_tokens() {
                        Ok(_) => {}
                        Err(e) => log::error!("SIGHUP: tokens not reloaded, old ones stay: {e}"),
                    },
                    Err(e) => {
                        log::error!("waiting for signals failed: {e}");
                        return;
                    }
                }
            }
        });
    if let Err(e) = signals {
        eprintln!("wschat: cannot start the signal thread: {e}");
        return ExitCode::FAILURE;
    }
    server.join();
    ExitCode::SUCCESS
}
