//! The accept loop, and one connection's life: its first request head, then plain HTTP
//! (`web.rs`) or a WebSocket handshake that becomes a client of the dispatcher.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, trace, warn};

use super::admission::{self, Slot};
use super::{Handle, Shared};
use crate::auth::Grant;
use crate::chat::Rights;
use crate::chat::ingress::{ChatEndpoint, ChatLimit};
use crate::chat::worker::ChatEvent;
use crate::config::Config;
use crate::conn::{Conn, Host};
use crate::embed::ServerEvent;
use crate::endpoint::{Direct, Endpoint, Frames, Throttle};
use crate::gate::WriteGate;
use crate::http::{self, Head, HeadError};
use crate::hub::Event;
use crate::park;
use crate::upgrade::{self, Accepted, Route};
use crate::web::{self, Site};

/// After `accept` fails for lack of descriptors or memory, wait this long before trying again:
/// the connection stays in the backlog, and retrying at once would spin a core until a
/// descriptor frees up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(super) fn accept_loop(shared: &Arc<Shared>) {
    let mut last_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = match shared.listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if shared.stopping.load(SeqCst) {
                    break;
                }
                let out_of_resources = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) {
                    // One line per 10 s at most: a descriptor shortage fails every accept.
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!("accept failed (will retry): {e}");
                        last_warning = Some(Instant::now());
                    }
                    std::thread::sleep(if out_of_resources {
                        ACCEPT_BACKOFF
                    } else {
                        Duration::from_millis(5)
                    });
                }
                continue;
            }
        };
        if shared.stopping.load(SeqCst) {
            break;
        }
        let Some(slot) = admission::take_slot(shared, peer.ip()) else {
            admission::reject_over_capacity(shared, stream, peer);
            continue;
        };
        // Most upgrade requests arrive whole with the connection: those become clients right
        // here, without a thread (a thread start and its stack cost more than the handshake).
        let Some((slot, stream, carried)) = front_door(slot, stream, peer) else {
            continue;
        };
        shared.stats.heads_on_threads.fetch_add(1, Relaxed);
        let threads = &shared.parking.threads;
        if threads.full() {
            // Every connection thread is taken: a new connection can retry; the ones parked
            // keep being served.
            drop(slot);
            admission::reject_over_capacity(shared, stream, peer);
            continue;
        }
        if threads
            .spawn(Box::new(move || serve(slot, stream, peer, carried)))
            .is_err()
        {
            // The job, and the slot in it, was dropped: the counts are already given back.
            if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                warn!("no connection thread for a new connection (dropped)");
                last_warning = Some(Instant::now());
            }
        }
    }
    debug!("accept loop ended");
}

/// The bytes one non-blocking read takes from a new connection: a WebSocket upgrade from a
/// browser is 400-1,500 bytes (cookies included); a head that does not fit goes to a thread.
const FRONT_DOOR_READ: usize = 4096;

/// On the accept thread: a WebSocket upgrade whose head has already arrived, whole, is checked
/// and handed to the dispatcher here, with no thread started; everything else (the head not
/// all there yet, plain HTTP, a refusal to answer, a chat login, which may wait on the chat's
/// disk, and any host hook or event channel, which are the host's code and may block) goes to
/// a thread with what was read so far. Nothing here waits: one `recv` with `MSG_DONTWAIT`,
/// so a slow head never delays the connections behind it, and the slow ones keep the 5 s /
/// 16 KiB bounds of `http::read_head_after` on their thread.
fn front_door(
    mut slot: Slot,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(Slot, TcpStream, Vec<u8>)> {
    let shared = &*slot.shared.clone();
    if shared.events.is_some() || shared.hooks.admit.is_some() {
        return Some((slot, stream, Vec::new()));
    }
    // On the stack: most of what is read here is parsed and dropped at once, so a heap
    // buffer would be an allocation and a free per connection for nothing. (It did not
    // change idle memory measurably; BENCHMARKS.md.)
    let mut stack = [0u8; FRONT_DOOR_READ];
    let limit = FRONT_DOOR_READ.min(shared.cfg.max_head_size);
    let n = match crate::sys::recv_nonblocking(&stream, &mut stack[..limit]) {
        Ok(n) if n > 0 => n,
        _ => return Some((slot, stream, Vec::new())), // nothing yet, closed or failed: the thread sees
    };
    let buf = &stack[..n];
    let Some(Ok(head)) = http::complete_head(buf) else {
        return Some((slot, stream, buf.to_vec()));
    };
    if !upgrade::wants_websocket(&head) || !slot.identify(&head) {
        return Some((slot, stream, buf.to_vec()));
    }
    let cfg = &shared.cfg;
    let accepted = match upgrade::accept(&head, &|route| protocols(cfg, route)) {
        Ok(accepted) if !matches!(accepted.route, Route::Chat { .. }) => accepted,
        _ => return Some((slot, stream, buf.to_vec())),
    };
    let peer = slot.client(peer);
    trace!("{peer}: {} {}", head.method, head.logged_target());
    match admission::decide(shared, &head, &accepted.route, peer) {
        Ok(grant) => {
            shared.stats.handshakes_inline.fetch_add(1, Relaxed);
            let _ = stream.set_nodelay(true);
            start_websocket(slot, stream, peer, head, accepted, grant, true);
        }
        Err(refusal) => {
            // Answering lingers (up to a second) over the closing socket: on a thread. Without
            // one (all taken), the connection is closed unanswered, as over capacity.
            let threads = shared.parking.threads.clone();
            let _ = threads.spawn(Box::new(move || {
                refusal.answer(&stream);
                drop(slot);
            }));
        }
    }
    None
}

/// One TCP connection, from its first byte to its end: read the head (`carried`: what the
/// accept thread already read of it), then serve plain HTTP (`web.rs`, with keep-alive) until
/// the connection ends or asks for a WebSocket, whose handshake is checked here and which
/// [`start_websocket`] hands to the dispatcher.
fn serve(mut slot: Slot, stream: TcpStream, peer: SocketAddr, carried: Vec<u8>) {
    let shared = &*slot.shared.clone();
    let cfg = &shared.cfg;
    let head =
        match http::read_head_after(&stream, carried, cfg.max_head_size, cfg.handshake_timeout) {
            Ok(head) => head,
            Err(e) => {
                debug!("{peer}: no request head: {e:?}");
                let status = match e {
                    HeadError::Timeout | HeadError::Idle => 408,
                    HeadError::TooLarge => 431,
                    HeadError::Malformed => 400,
                    HeadError::Closed => return,
                };
                shared.stats.rejected(status);
                return http::reject(&stream, status, &[]);
            }
        };
    // From a trusted proxy, the head says who the client is: count that client, and use its
    // address in logs, hooks and events from here on.
    if !slot.identify(&head) {
        debug!("{peer}: the forwarded client is over the per-IP limit");
        shared.stats.rejected(503);
        return http::reject(&stream, 503, &[("Retry-After", "5")]);
    }
    let peer = slot.client(peer);
    // The target through the redaction: a `?token=` must never reach a log (SECURITY.md).
    trace!("{peer}: {} {}", head.method, head.logged_target());
    let head = if upgrade::wants_websocket(&head) {
        head
    } else {
        let handle = Handle {
            shared: slot.shared.clone(),
        };
        let site = Site {
            cfg,
            stats: &shared.stats,
            handle: &handle,
        };
        match web::serve(&site, &stream, head, peer) {
            Some(upgrade) => upgrade,
            None => return,
        }
    };
    let mut accepted = match upgrade::accept(&head, &|route| protocols(cfg, route)) {
        Ok(accepted) => accepted,
        Err(refusal) => {
            debug!(
                "{peer}: handshake refused with {}: {}",
                refusal.status, refusal.why
            );
            shared.stats.rejected(refusal.status);
            return http::reject(&stream, refusal.status, refusal.headers);
        }
    };
    // Admission, decided before the 101 so that a refusal is an HTTP status a client can see.
    let Ok(grant) = admission::check_handshake(shared, &head, &accepted.route, peer, &stream)
    else {
        return;
    };
    if let (Route::Chat { name, bound, .. }, Some(bound_name)) = (
        &mut accepted.route,
        grant.as_ref().and_then(|g| g.name.clone()),
    ) {
        *name = Some(bound_name);
        *bound = true;
    }
    // Without TCP_NODELAY, a pong followed by a data frame can wait ~40 ms (Nagle + delayed ACK).
    let _ = stream.set_nodelay(true);
    start_websocket(slot, stream, peer, head, accepted, grant, false);
}

/// Makes an accepted handshake a client: its id, its `Conn`, `Event::Open` to the dispatcher
/// (which writes the 101), then parks it or reads its early frames (on this thread, or, from
/// the accept thread (`on_accept_thread`), on a new one).
fn start_websocket(
    slot: Slot,
    stream: TcpStream,
    peer: SocketAddr,
    head: Head,
    accepted: Accepted,
    grant: Option<Grant>,
    on_accept_thread: bool,
) {
    let shared = &*slot.shared.clone();
    let cfg = &shared.cfg;
    let id = shared.next_id.fetch_add(1, Relaxed);
    debug!("{peer}: client {id} connected to {:?}", accepted.route);
    let stream = Arc::new(stream);
    // Reads block until data arrives or `park_after` passes with none; then the connection is
    // parked (park.rs): an idle client costs no wake-ups and no thread. Only the dispatcher
    // writes (the 101 first), with non-blocking sends.
    let park_after = (!cfg.park_after.is_zero()).then_some(cfg.park_after);
    let _ = stream.set_read_timeout(park_after);
    shared.stats.ws_open.fetch_add(1, Relaxed);
    shared.stats.ws_total.fetch_add(1, Relaxed);
    let host = Host {
        events: shared.events.clone(),
        path: head.path().to_string(),
        stats: shared.stats.clone(),
    };
    if let Some(events) = &host.events {
        let _ = events.send(ServerEvent::Connected {
            client: id,
            path: host.path.clone(),
            peer,
        });
    }
    // An echo's reader writes the echo itself while the dispatcher holds nothing for it.
    let gate = (accepted.route == Route::Echo).then(|| Arc::new(WriteGate::new()));
    let (endpoint, login): (Box<dyn Endpoint>, _) = match &accepted.route {
        Route::Chat { name, room, bound } => (
            Box::new(ChatEndpoint::new(
                id,
                shared.chat.clone(),
                ChatLimit::new(cfg.chat_rate, cfg.chat_burst),
                shared.hooks.filter.clone(),
            )),
            Some(ChatEvent::Connect {
                id,
                addr: peer.ip(),
                name: name.clone(),
                room: room.clone(),
                bound: *bound,
                rights: grant
                    .as_ref()
                    .map(|g| Rights {
                        rooms: g.rooms.clone(),
                        admin: g.admin,
                        // A file token carries the token itself; a JWT does not.
                        file_token: g.token.is_some(),
                    })
                    .unwrap_or_default(),
            }),
        ),
        Route::Relay(_) => (
            Box::new(Frames::new(
                id,
                shared.tx.clone(),
                Throttle::new(cfg.relay_rate, cfg.relay_burst),
                shared.budget.clone(),
                None,
            )),
            None,
        ),
        Route::Echo => (
            Box::new(Frames::new(
                id,
                shared.tx.clone(),
                Throttle::new(0.0, 0.0),
                shared.budget.clone(),
                gate.clone()
                    .map(|g| Direct::new(stream.clone(), g, shared.stats.clone())),
            )),
            None,
        ),
    };
    // The dispatcher closes the connection when its JWT expires: the wall-clock `exp` as a
    // point on the monotonic clock the dispatcher's loop waits on.
    let expires = grant.as_ref().and_then(|g| g.expires).map(|at| {
        Instant::now()
            + at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
    });
    // The dispatcher registers the client (and writes its 101) before the chat worker hears
    // of it, so the chat's first answer (`welcome`) always finds the client registered.
    let opened = shared
        .tx
        .send(Event::Open {
            id,
            stream: stream.clone(),
            handshake: accepted.response,
            route: accepted.route,
            expires,
            token: grant.and_then(|g| g.token),
            gate,
        })
        .is_ok()
        && login.is_none_or(|login| shared.chat.send(login).is_ok());
    let events = host.events.clone();
    let on_end = Box::new(move || {
        slot.shared.stats.ws_open.fetch_sub(1, Relaxed);
        if let Some(events) = events {
            let _ = events.send(ServerEvent::Left { client: id });
        }
        debug!("{peer}: client {id} disconnected");
        drop(slot);
    });
    // Frames that came with the head are read on this thread at once.
    let early = !head.rest.is_empty();
    let conn = Box::new(Conn::new(
        id,
        stream,
        head.rest,
        cfg,
        shared.tx.clone(),
        endpoint,
        host,
        on_end,
    ));
    if !opened {
        return; // shutting down: dropping the connection reports it gone
    }
    if park_after.is_some() && !early {
        park::park_new(&shared.parking, conn);
    } else if on_accept_thread {
        let parking = shared.parking.clone();
        shared
            .parking
            .threads
            .spawn_or_queue(Box::new(move || park::drive(&parking, conn, None)));
    } else {
        park::drive(&shared.parking, conn, None);
    }
}

/// The subprotocols an endpoint supports, in order of preference.
fn protocols(cfg: &Config, route: &Route) -> Vec<String> {
    match route {
        Route::Echo => vec!["echo-protocol".to_string()],
        Route::Chat { .. } => vec!["wschat.v1".to_string()],
        Route::Relay(_) => cfg.relay_protocol.iter().cloned().collect(),
    }
}
