//! Admission: whether a new connection may take a place (the connection cap and the per-IP
//! cap; over either, a 503 from a short-lived rejecter thread), and whether a WebSocket
//! handshake may become a client (Origin, access token, the host's admission hook).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use log::debug;

use super::Shared;
use crate::auth::{self, Grant};
use crate::embed::AdmitRequest;
use crate::forwarded;
use crate::http::{self, Head};
use crate::upgrade::Route;

/// Connections over the cap are answered 503 by short-lived threads; at most this many at once,
/// beyond which they are closed without an answer (a flood must not turn into a thread bomb).
const MAX_REJECTERS: usize = 256;

/// Takes a place for a new connection from `peer`: `None` when the server is at
/// `max_connections` or the peer at `max_per_ip` (the caller answers 503). A connection from a
/// trusted proxy is counted per client once its first head names the client
/// ([`Slot::identify`]).
pub(super) fn take_slot(shared: &Arc<Shared>, peer: IpAddr) -> Option<Slot> {
    let open = shared.stats.tcp_open.load(Relaxed);
    if open >= shared.max_connections {
        return None;
    }
    let peer = forwarded::canonical(peer);
    let from_proxy = shared.cfg.trusted_proxies.iter().any(|c| c.contains(peer));
    let counted = if from_proxy {
        None
    } else {
        let key = forwarded::limit_key(peer);
        if !shared.enter_ip(key) {
            return None;
        }
        Some(key)
    };
    shared.stats.tcp_open.fetch_add(1, Relaxed);
    Some(Slot {
        shared: shared.clone(),
        counted,
        client: peer,
        from_proxy,
    })
}

/// One connection's place in `tcp_open` and the per-IP count, given back when it is dropped:
/// when a plain HTTP connection ends, or when a WebSocket connection ends, on whichever thread
/// (connection or parking) that happens.
pub(super) struct Slot {
    pub(super) shared: Arc<Shared>,
    /// The key counted in `per_ip`, if any yet.
    counted: Option<IpAddr>,
    /// Who the client is: the peer, or who a trusted proxy forwarded for.
    client: IpAddr,
    from_proxy: bool,
}

impl Slot {
    /// For a connection from a trusted proxy: takes the client from the first request head
    /// and counts it toward `max_per_ip`; `false` when that client is at its limit (503).
    pub(super) fn identify(&mut self, head: &Head) -> bool {
        if !self.from_proxy || self.counted.is_some() {
            return true;
        }
        let client = forwarded::client_ip(self.client, head, &self.shared.cfg.trusted_proxies);
        let key = forwarded::limit_key(client);
        if !self.shared.enter_ip(key) {
            return false;
        }
        self.client = client;
        self.counted = Some(key);
        true
    }

    /// The client's address as logs and hooks see it: the peer's, or, from a trusted proxy,
    /// the forwarded client's with port 0 (its port is not known).
    pub(super) fn client(&self, peer: SocketAddr) -> SocketAddr {
        if self.from_proxy {
            SocketAddr::new(self.client, 0)
        } else {
            SocketAddr::new(self.client, peer.port())
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.counted {
            self.shared.leave_ip(key);
        }
        self.shared.stats.tcp_open.fetch_sub(1, Relaxed);
    }
}

impl Shared {
    /// Counts a new connection from `ip` (a limit key: see `forwarded::limit_key`); `false`
    /// when that address is at `max_per_ip`.
    fn enter_ip(&self, ip: IpAddr) -> bool {
        let cfg = &self.cfg;
        if cfg.max_per_ip == 0 || (ip.is_loopback() && !cfg.limit_loopback) {
            return true;
        }
        let mut per_ip = self.per_ip.lock();
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= cfg.max_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    fn leave_ip(&self, ip: IpAddr) {
        let cfg = &self.cfg;
        if cfg.max_per_ip == 0 || (ip.is_loopback() && !cfg.limit_loopback) {
            return;
        }
        let mut per_ip = self.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip); // the map holds only addresses with open connections
            }
        }
    }
}

pub(super) fn reject_over_capacity(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    debug!("{peer}: over the connection limit, answering 503");
    answer_and_close(shared, stream, None, 503, Some(("Retry-After", "5")));
}

/// Answers `status` and closes, on a short-lived thread of its own (the answer lingers up to a
/// second over the closing socket, see `http::reject`), keeping `slot` (if any) until then:
/// for connections that have no connection thread and must not take one (over capacity, or a
/// head the front door gave up on). At most [`MAX_REJECTERS`] at once; past it, closed
/// unanswered.
pub(super) fn answer_and_close(
    shared: &Arc<Shared>,
    stream: TcpStream,
    slot: Option<Slot>,
    status: u16,
    header: Option<(&'static str, &'static str)>,
) {
    shared.stats.rejected(status);
    if shared.rejecters.fetch_add(1, Relaxed) >= MAX_REJECTERS {
        shared.rejecters.fetch_sub(1, Relaxed);
        return; // dropped: closes the socket
    }
    let s = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("wschat-{status}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            http::reject(&stream, status, header.as_slice());
            drop(slot);
            s.rejecters.fetch_sub(1, Relaxed);
        });
    if spawned.is_err() {
        shared.rejecters.fetch_sub(1, Relaxed);
    }
}

/// Why a handshake is refused: the status and at most one extra header for the answer.
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) header: Option<(&'static str, String)>,
}

impl Refusal {
    fn new(status: u16) -> Refusal {
        Refusal {
            status,
            header: None,
        }
    }

    /// Answers it and closes (lingering up to a second: see `http::reject`).
    pub(super) fn answer(&self, stream: &TcpStream) {
        match &self.header {
            Some((name, value)) => http::reject(stream, self.status, &[(name, value)]),
            None => http::reject(stream, self.status, &[]),
        }
    }
}

/// The checks a WebSocket handshake passes before its 101: Host and Origin (403), the access
/// token when tokens are configured (401, a file token or a JWT), a private relay channel
/// (403 without a matching `channels` claim), then the host's admission hook. On a refusal the
/// client is answered here and `Err` returned; otherwise the token's grant, if any.
pub(super) fn check_handshake(
    shared: &Shared,
    head: &Head,
    route: &Route,
    peer: SocketAddr,
    stream: &TcpStream,
) -> Result<Option<Grant>, ()> {
    decide(shared, head, route, peer).map_err(|refusal| refusal.answer(stream))
}

/// [`check_handshake`] without answering: the caller answers the refusal (counted and logged
/// here), where lingering over a closing socket does not hold up others.
pub(super) fn decide(
    shared: &Shared,
    head: &Head,
    route: &Route,
    peer: SocketAddr,
) -> Result<Option<Grant>, Refusal> {
    let refused = |refusal: Refusal| {
        shared.stats.rejected(refusal.status);
        Err(refusal)
    };
    if !auth::host_allowed(head, &shared.cfg.allowed_hosts) {
        debug!("{peer}: Host {:?} not allowed", head.header("host"));
        return refused(Refusal::new(403));
    }
    if !auth::origin_allowed(head, &shared.cfg.allowed_origins) {
        debug!("{peer}: Origin {:?} refused", head.header("origin"));
        return refused(Refusal::new(403));
    }
    let tokens = shared.tokens.read().clone();
    let grant = if !tokens.required() {
        None
    } else {
        match tokens.admit(auth::presented_token(head).as_deref()) {
            Ok(grant) => Some(grant),
            Err(denied) => {
                // Never log the token itself.
                debug!("{peer}: access token refused: {denied:?}");
                return refused(Refusal {
                    status: 401,
                    header: Some(("WWW-Authenticate", denied.challenge())),
                });
            }
        }
    };
    drop(tokens);
    if let Some(g) = grant.as_ref().filter(|g| g.token.is_none()) {
        debug!(
            "{peer}: JWT of user {:?} accepted (rooms {:?}, channels {:?}, admin {})",
            g.sub, g.rooms, g.channels, g.admin
        );
    }
    // A private relay channel needs a token whose `channels` claim matches it.
    if let Route::Relay(channel) = route {
        if auth::any_matches(&shared.cfg.private_channels, channel)
            && !grant
                .as_ref()
                .is_some_and(|g| auth::any_matches(&g.channels, channel))
        {
            debug!("{peer}: private channel {channel:?} refused: no matching `channels` claim");
            return refused(Refusal {
                status: 403,
                header: Some((
                    "WWW-Authenticate",
                    "Bearer error=\"insufficient_scope\", error_description=\"private channel\""
                        .to_string(),
                )),
            });
        }
    }
    if let Some(admit) = &shared.hooks.admit {
        let user = grant.as_ref().and_then(|g| g.sub.as_deref());
        if let Err(status) = admit(&AdmitRequest { head, peer, user }) {
            let status = if (400..500).contains(&status) {
                status
            } else {
                403
            };
            debug!("{peer}: refused by the admission hook with {status}");
            return refused(Refusal::new(status));
        }
    }
    Ok(grant)
}
