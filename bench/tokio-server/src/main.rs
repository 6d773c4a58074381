//! Comparison server for `wschat bench`: an idiomatic tokio + tokio-tungstenite broadcast server.
//!
//! - `ws://ADDR/` (any path but `/echo`): on connect sends a welcome text, then relays every text
//!   or binary message to every *other* connected client through one
//!   `tokio::sync::broadcast` channel, one task per connection (the shape of the
//!   tokio-tungstenite examples).
//! - `ws://ADDR/echo`: sends a welcome text, then echoes every data message back to its sender.
//!
//! Usage: `tokio-server [PORT | ADDR]` (default `127.0.0.1:8080`; env `PORT` also works).
//! `SEND=each` writes each broadcast message with `write.send(msg).await` (a write and a flush
//! per message, as in tokio-tungstenite's examples/server.rs chat); the default batches (feed
//! what is waiting, flush once), which is what a tuned tokio server does.
//! Runs the default multi-threaded runtime (one worker per core).

// The Err type of the handshake callback is fixed by tokio-tungstenite's API.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Slots in the broadcast ring. A receiver that falls further behind than this loses the oldest
/// messages (`RecvError::Lagged`), which the bench client reports as loss. 1024 is the common
/// choice in tokio examples; it bounds memory at `capacity x message` whatever the client count.
const CHANNEL_CAPACITY: usize = 1024;

static LAGGED: AtomicU64 = AtomicU64::new(0);

#[tokio::main]
async fn main() {
    let arg = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .unwrap_or_else(|| "8080".to_owned());
    let addr: SocketAddr = if arg.contains(':') {
        arg.parse().expect("ADDR must be ip:port")
    } else {
        let port: u16 = arg.parse().expect("PORT must be a number");
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    // tokio's bind uses a listen backlog of 1024.
    let listener = TcpListener::bind(addr).await.expect("bind");
    eprintln!("tokio-server listening on ws://{addr}/ (echo on /echo)");
    let (tx, _) = broadcast::channel::<(u64, Message)>(CHANNEL_CAPACITY);
    let mut next_id = 0u64;
    // SIGTERM too, so that compare.sh's stop prints the lagged count.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                next_id += 1;
                tokio::spawn(handle(stream, next_id, tx.clone()));
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    eprintln!(
        "tokio-server: {} lagged messages dropped",
        LAGGED.load(Ordering::Relaxed)
    );
}

async fn handle(stream: TcpStream, id: u64, tx: broadcast::Sender<(u64, Message)>) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut write, mut read) = ws.split();
    if write.send(Message::text("welcome")).await.is_err() {
        return;
    }

    if path == "/echo" {
        while let Some(Ok(msg)) = read.next().await {
            if (msg.is_text() || msg.is_binary()) && write.send(msg).await.is_err() {
                break;
            }
        }
        return;
    }

    // Subscribe before reading so that nothing said after our welcome is missed.
    let mut rx = tx.subscribe();
    let each = std::env::var("SEND").is_ok_and(|v| v == "each");
    loop {
        tokio::select! {
            incoming = read.next() => match incoming {
                Some(Ok(msg)) if msg.is_text() || msg.is_binary() => {
                    let _ = tx.send((id, msg));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
            },
            outgoing = rx.recv() => {
                if each {
                    match outgoing {
                        Ok((from, msg)) => {
                            if from != id && write.send(msg).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            LAGGED.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    continue;
                }
                // Queue everything already waiting, then flush once: one write syscall for a
                // burst instead of one per message (what `SinkExt::send` would do).
                let mut next = outgoing;
                loop {
                    match next {
                        Ok((from, msg)) => {
                            if from != id && write.feed(msg).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            LAGGED.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    next = match rx.try_recv() {
                        Ok(m) => Ok(m),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            Err(broadcast::error::RecvError::Lagged(n))
                        }
                        Err(_) => break,
                    };
                }
                if write.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
