//! The accept loop (with the front door, `door.rs`, for heads still arriving), and one
//! connection's life: its first request head, then plain HTTP (`web.rs`) or a WebSocket
//! handshake that becomes a client of the dispatcher.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, trace, warn};

use super::admission::{self, Slot};
use super::door::{Arrival, Door, LISTENER_KEY, Progress};
use super::{Handle, Shared};
use crate::auth::Grant;
use crate::chat::Rights;
use crate::chat::ingress::{ChatEndpoint, ChatLimit};
use crate::chat::worker::ChatEvent;
use crate::config::Config;
use crate::conn::{Conn, Host};
use crate::embed::ServerEvent;
use crate::endpoint::{Direct, Endpoint, Frames, Throttle, write_held};
use crate::gate::WriteGate;
use crate::http::{self, Head, HeadError};
use crate::hub::{ClientId, Event};
use crate::park;
use crate::sys;
use crate::upgrade::{self, Accepted, Route};
use crate::web::{self, Site};

/// After `accept` fails for lack of descriptors or memory, stop accepting this long: the
/// connection stays in the backlog, and retrying at once would spin a core until a descriptor
/// frees up. Heads already arriving are still read meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// After any other failure of `accept` (not expected; logged), the same pause, shorter.
const ACCEPT_RETRY: Duration = Duration::from_millis(5);

/// Connections accepted per pass of the loop before arriving heads get their turn again: a
/// connect flood cannot starve the heads (the listener stays ready, so the next wait returns
/// at once). 16 against 128: 2% more handshakes/s at 10,000, p90 1.8 ms against 2.1, when a
/// pass's 101s waited for the whole pass; since they go out at once (the joining inbox), 4, 16
/// and 64 measure the same within the noise (BENCHMARKS.md).
const ACCEPT_BURST: usize = 16;

/// Clients put in the dispatcher's joining inbox (`Hub::take_joined`) are announced to it with
/// one `Event::Joined` once this many wait, or this long after the first of them: the
/// dispatcher then wakes once per burst of handshakes instead of once per client or per pass,
/// and a client's heartbeats and token expiry start at most this late (a 30 s interval and a
/// one-second `exp` do not notice). Nothing a client is sent waits for it: see `take_joined`.
const JOINED_ANNOUNCE_COUNT: usize = 256;
const JOINED_ANNOUNCE_DELAY: Duration = Duration::from_millis(5);

/// The accept thread: one epoll for the listener and the heads still arriving (`door.rs`).
/// A connection whose head is whole, a WebSocket upgrade that needs nothing slow, becomes a
/// client here, with no thread; everything else goes to a connection thread with its head.
pub(super) fn accept_loop(shared: &Arc<Shared>) {
    let epoll = &shared.door;
    let cfg = &shared.cfg;
    let mut door = Door::new(cfg.handshake_timeout, cfg.max_head_size);
    let mut paused_until: Option<Instant> = None;
    let mut last_warning: Option<Instant> = None;
    let mut keys = Vec::with_capacity(256);
    let mut joining = Joining::default();
    loop {
        let now = Instant::now();
        if paused_until.is_some_and(|t| now >= t) {
            paused_until = None;
            if let Err(e) = epoll.watch_readable(&shared.listener, LISTENER_KEY) {
                // Not expected (the listener was watched before): try again after a pause.
                warn!("cannot watch the listener again: {e}");
                paused_until = Some(now + ACCEPT_BACKOFF);
            }
        }
        let wake_at = [door.next_deadline(), paused_until, joining.announce_at()]
            .into_iter()
            .flatten()
            .min();
        keys.clear();
        if let Err(e) = epoll.wait_timeout(&mut keys, sys::wait_ms(wake_at, now)) {
            if e.kind() != io::ErrorKind::Interrupted {
                warn!("accept thread: epoll_wait failed: {e}");
                std::thread::sleep(ACCEPT_RETRY);
            }
        }
        if shared.stopping.load(SeqCst) {
            break;
        }
        // Heads first, then new connections: a head that arrived is older than the
        // connections still in the backlog, and every accept below is a whole handshake.
        let mut listener_ready = false;
        for &key in &keys {
            match key {
                LISTENER_KEY => listener_ready = true,
                sys::WAKE_KEY => {} // the shutdown: `stopping` is set
                key => match door.read(epoll, key) {
                    Some((arrival, Progress::Whole)) => arrived(shared, arrival, &mut joining),
                    Some((arrival, Progress::TooLarge)) => refuse_head(shared, arrival, 431),
                    _ => {} // more to come, or gone
                },
            }
        }
        if listener_ready {
            if let Some(pause) = accept_burst(shared, &mut door, &mut joining, &mut last_warning) {
                epoll.remove(&shared.listener);
                paused_until = Some(Instant::now() + pause);
            }
        }
        joining.announce_if_due(shared, Instant::now());
        for late in door.expired(epoll, Instant::now()) {
            refuse_head(shared, late, 408);
        }
        shared
            .stats
            .heads_arriving
            .store(door.len() as u64, Relaxed);
    }
    debug!("accept loop ended");
}

/// Accepts what the listener holds, up to [`ACCEPT_BURST`]; returns how long to stop accepting
/// when `accept` failed.
fn accept_burst(
    shared: &Arc<Shared>,
    door: &mut Door,
    joining: &mut Joining,
    last_warning: &mut Option<Instant>,
) -> Option<Duration> {
    for _ in 0..ACCEPT_BURST {
        let (stream, peer) = match shared.listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => return None,
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                _ => {
                    if shared.stopping.load(SeqCst) {
                        return None;
                    }
                    // One line per 10 s at most: a descriptor shortage fails every accept.
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!("accept failed (will retry): {e}");
                        *last_warning = Some(Instant::now());
                    }
                    let out_of_resources = matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    );
                    return Some(if out_of_resources {
                        ACCEPT_BACKOFF
                    } else {
                        ACCEPT_RETRY
                    });
                }
            },
        };
        if shared.stopping.load(SeqCst) {
            return None;
        }
        let Some(slot) = admission::take_slot(shared, peer.ip()) else {
            admission::reject_over_capacity(shared, stream, peer);
            continue;
        };
        let mut arrival = Arrival {
            slot,
            stream,
            peer,
            head: Vec::new(),
        };
        // Most upgrade requests arrive whole with the connection, or a moment after it.
        match arrival.read(shared.cfg.max_head_size) {
            Progress::Whole => arrived(shared, arrival, joining),
            Progress::More => {
                if let Err(e) = door.admit(&shared.door, arrival) {
                    debug!("{peer}: cannot watch its request head, closing it: {e}");
                }
            }
            Progress::TooLarge => refuse_head(shared, arrival, 431),
            Progress::Gone => {}
        }
    }
    None
}

/// A head that did not end in time (408) or within `max_head_size` (431): answered by a
/// rejecter thread, not a connection thread (those may all be taken, and the heads that give
/// up at one deadline can be many).
fn refuse_head(shared: &Arc<Shared>, arrival: Arrival, status: u16) {
    let Arrival {
        slot, stream, peer, ..
    } = arrival;
    debug!("{peer}: no request head: {status}");
    admission::answer_and_close(shared, stream, Some(slot), status, None);
}

/// A whole head: a WebSocket upgrade is checked and handed to the dispatcher here, with no
/// thread started; everything else (plain HTTP, a refusal to answer, a chat login, which may
/// wait on the chat's disk, and any host hook or event channel, which are the host's code and
/// may block) goes to a connection thread with the head.
fn arrived(shared: &Arc<Shared>, arrival: Arrival, joining: &mut Joining) {
    let Arrival {
        mut slot,
        stream,
        peer,
        head: bytes,
    } = arrival;
    if shared.events.is_some() || shared.hooks.admit.is_some() {
        return to_thread(shared, slot, stream, peer, bytes);
    }
    let Some(Ok(head)) = http::complete_head(&bytes) else {
        return to_thread(shared, slot, stream, peer, bytes); // malformed: 400 there
    };
    if !upgrade::wants_websocket(&head) || !slot.identify(&head) {
        return to_thread(shared, slot, stream, peer, bytes);
    }
    let cfg = &shared.cfg;
    let accepted = match upgrade::accept(&head, &|route| protocols(cfg, route)) {
        Ok(accepted) if !matches!(accepted.route, Route::Chat { .. }) => accepted,
        _ => return to_thread(shared, slot, stream, peer, bytes),
    };
    let peer = slot.client(peer);
    trace!("{peer}: {} {}", head.method, head.logged_target());
    match admission::decide(shared, &head, &accepted.route, peer) {
        Ok(grant) => {
            shared.stats.handshakes_inline.fetch_add(1, Relaxed);
            start_websocket(slot, stream, peer, head, accepted, grant, Some(joining));
        }
        Err(refusal) => {
            // Answering lingers (up to a second) over the closing socket: on a thread. Without
            // one (all taken), the connection is closed unanswered, as over capacity.
            let _ = shared.parking.threads.spawn(Box::new(move || {
                refusal.answer(&stream);
                drop(slot);
            }));
        }
    }
}

/// Serves a connection with a whole head on a connection thread; at the cap on threads, 503.
fn to_thread(shared: &Arc<Shared>, slot: Slot, stream: TcpStream, peer: SocketAddr, head: Vec<u8>) {
    shared.stats.heads_on_threads.fetch_add(1, Relaxed);
    let threads = &shared.parking.threads;
    if threads.full() {
        // Every connection thread is taken: a new connection can retry; the ones parked
        // keep being served.
        drop(slot);
        return admission::reject_over_capacity(shared, stream, peer);
    }
    if threads
        .spawn(Box::new(move || serve(slot, stream, peer, head)))
        .is_err()
    {
        // The job, and the slot in it, was dropped: the counts are already given back.
        debug!("{peer}: no connection thread for it (dropped)");
    }
}

/// One TCP connection on its thread, from its first head to its end: the head (`carried`:
/// whole, as the accept thread read it, so `read_head_after` only parses it), then plain HTTP
/// (`web.rs`, with keep-alive) until the connection ends or asks for a WebSocket, whose
/// handshake is checked here and which [`start_websocket`] hands to the dispatcher.
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
    // TCP_NODELAY is inherited from the listener (`sys::set_nodelay_inherited`).
    start_websocket(slot, stream, peer, head, accepted, grant, None);
}

/// Makes an accepted handshake a client: its id, its `Conn`, `Event::Open` to the dispatcher,
/// the 101 (written here for relay and echo, by the dispatcher for chat), then parks it or
/// reads its early frames (on this thread, or, from the accept thread, on a new one). On the
/// accept thread (`joining` given) the `Open` of a client that will park goes to the
/// dispatcher's joining inbox, which does not wake it (`Hub::take_joined`).
fn start_websocket(
    slot: Slot,
    stream: TcpStream,
    peer: SocketAddr,
    head: Head,
    accepted: Accepted,
    grant: Option<Grant>,
    joining: Option<&mut Joining>,
) {
    let shared = &*slot.shared.clone();
    let cfg = &shared.cfg;
    let id = shared.next_id.fetch_add(1, Relaxed);
    debug!("{peer}: client {id} connected to {:?}", accepted.route);
    let stream = Arc::new(stream);
    // Its reads wait at most `park_after` (set by `Conn::run`); then the connection is parked
    // (park.rs): an idle client costs no wake-ups and no thread. Its writer is the
    // dispatcher, after the 101 (below) and except an echo's direct writes (`gate.rs`).
    let park_after = (!cfg.park_after.is_zero()).then_some(cfg.park_after);
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
    // The 101 of a relay or echo client is written here, right after the dispatcher is told
    // of the client (`gate.rs`); an echo's reader then writes echoes itself while the
    // dispatcher holds nothing for it. A chat client's 101 is the dispatcher's to write: the
    // chat worker speaks to it at once, through the dispatcher.
    let write_101 = !matches!(accepted.route, Route::Chat { .. });
    let gate = write_101.then(|| Arc::new(WriteGate::new()));
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
    // The dispatcher registers the client (and writes a chat client's 101) before the chat
    // worker hears of it, so the chat's first answer (`welcome`) always finds the client
    // registered.
    let (handshake, response) = if write_101 {
        (Vec::new(), accepted.response)
    } else {
        (accepted.response, Vec::new())
    };
    let open = Event::Open {
        id,
        stream: stream.clone(),
        handshake,
        route: accepted.route,
        expires,
        token: grant.and_then(|g| g.token),
        gate: gate.clone(),
    };
    let events = host.events.clone();
    let on_end = Box::new(move || {
        slot.shared.stats.ws_open.fetch_sub(1, Relaxed);
        if let Some(events) = events {
            let _ = events.send(ServerEvent::Left { client: id });
        }
        debug!("{peer}: client {id} disconnected");
        drop(slot);
    });
    // Frames that came with the head are read on a thread at once.
    let early = !head.rest.is_empty();
    let conn = Box::new(Conn::new(
        id,
        stream.clone(),
        head.rest,
        cfg,
        shared.tx.clone(),
        endpoint,
        host,
        on_end,
    ));
    let first = gate.map(|gate| First {
        stream,
        gate,
        response,
    });
    let parks = park_after.is_some() && !early;
    let on_accept_thread = joining.is_some();
    let opened = match joining.filter(|_| parks && login.is_none()) {
        Some(joining) => joining.put(shared, open),
        None => {
            shared.tx.send(open).is_ok()
                && login.is_none_or(|login| shared.chat.send(login).is_ok())
        }
    };
    if !opened {
        return; // shutting down: dropping the connection reports it gone
    }
    if let Some(first) = first {
        first.write(shared, conn.id);
    }
    if parks {
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

/// The clients the accept thread has put in the dispatcher's joining inbox since it last
/// announced them with `Event::Joined` (see [`JOINED_ANNOUNCE_COUNT`]).
///
/// Why not an `Event::Open` each: each one sent alone woke the dispatcher, 1,263 wake-ups (and
/// 5,648 `sched_yield`s of crossbeam's back-off) in a burst of 10,000 handshakes, a second
/// thread competing with the clients for 2 cores; sent together at the end of each pass of
/// the loop, they still woke it once a pass, and each 101 waited for the rest of its pass
/// (BENCHMARKS.md, "Handshakes").
#[derive(Default)]
struct Joining {
    waiting: usize,
    /// When the first of them was put in the inbox.
    since: Option<Instant>,
}

impl Joining {
    /// Puts a client's `Open` in the inbox; false: the server is shutting down.
    fn put(&mut self, shared: &Shared, open: Event) -> bool {
        if shared.joining.send(open).is_err() {
            return false;
        }
        self.waiting += 1;
        self.since.get_or_insert_with(Instant::now);
        true
    }

    /// When the waiting clients must be announced at the latest.
    fn announce_at(&self) -> Option<Instant> {
        self.since.map(|t| t + JOINED_ANNOUNCE_DELAY)
    }

    /// Announces the waiting clients when enough wait or the first has waited long enough,
    /// or at once when the dispatcher has something to send them on joining (a welcome text).
    fn announce_if_due(&mut self, shared: &Shared, now: Instant) {
        if self.waiting == 0 {
            return;
        }
        let due = self.waiting >= JOINED_ANNOUNCE_COUNT
            || shared.cfg.welcome.is_some()
            || self.announce_at().is_some_and(|at| now >= at);
        if due {
            // An error: shutting down, and the dispatcher takes the inbox on its own.
            let _ = shared.tx.send(Event::Joined);
            *self = Joining::default();
        }
    }
}

/// A 101 to write behind the client's write gate, after its `Event::Open` was sent.
struct First {
    stream: Arc<TcpStream>,
    gate: Arc<WriteGate>,
    response: Vec<u8>,
}

impl First {
    fn write(&self, shared: &Shared, id: ClientId) {
        write_held(
            &self.stream,
            &self.gate,
            &shared.stats,
            id,
            &self.response,
            &shared.tx,
        );
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
