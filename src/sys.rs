//! The few system calls std does not offer, each behind a safe function.
//!
//! This is the library's only module with `unsafe` (the bench client, a module of the binary,
//! has its own `bench/sys.rs`). Every call here is a plain libc call on a file descriptor that
//! the caller keeps alive for the duration of the call (it is borrowed from a `TcpStream`, a
//! `TcpListener`, a `File` or an `OwnedFd` owned by this module), so no call can act on a
//! closed or reused descriptor.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `send(2)` with `MSG_DONTWAIT`: writes what the socket buffer takes now and never blocks.
///
/// Why not `set_nonblocking`: O_NONBLOCK lives on the open file description, which the
/// connection's reader thread shares; it must keep blocking reads (idle connections cost no
/// wakeups only because that thread sleeps in `read`). The flag here applies to this call only.
/// `MSG_NOSIGNAL` turns a write to a reset peer into `EPIPE` instead of a process-wide SIGPIPE,
/// which matters when the library is embedded in a host that did not ignore SIGPIPE.
pub(crate) fn send_nonblocking(fd: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid slice for its length; `fd` is borrowed, so it is open.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(2)` with `MSG_DONTWAIT`: what has arrived, or `WouldBlock`, never waiting. Used by
/// the parking thread, which reads many idle connections and must not block on any of them,
/// while their sockets stay in blocking mode for the threads that read them when active.
pub(crate) fn recv_nonblocking(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable slice for its length; `fd` is borrowed, so it is open.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Takes an exclusive `flock(2)` on `file` without waiting; `WouldBlock` when another open
/// file (another server, in this process or another) holds it. Released when `file` closes.
pub(crate) fn try_lock_exclusive(file: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open descriptor.
    cvt(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }).map(drop)
}

/// Gives free heap pages back to the operating system (glibc's `malloc_trim`), including
/// pages in the middle of the heap that `free` alone keeps. After a burst of connections goes
/// idle, their transient buffers are free but interleaved with the connections' long-lived
/// state, and the process would otherwise keep its burst-time RSS forever.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap structures, under its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Calls `listen(2)` again on a bound listener to raise its accept backlog.
///
/// std's `TcpListener::bind` listens with a backlog of 128; on Linux a second `listen` on the
/// same socket just updates it. With 128, a burst of 300 connects took 2 s (SYN retries).
pub(crate) fn set_backlog(listener: &impl AsRawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open descriptor.
    cvt(unsafe { libc::listen(listener.as_raw_fd(), backlog) }).map(drop)
}

/// Milliseconds until `at` for `epoll_wait`, rounded up (waking early would just wait again);
/// -1 (no deadline): until something happens.
pub(crate) fn wait_ms(at: Option<Instant>, now: Instant) -> i32 {
    at.map_or(-1, |at| {
        let nanos = at.saturating_duration_since(now).as_nanos();
        nanos.div_ceil(1_000_000).min(i32::MAX as u128) as i32
    })
}

/// Sets `TCP_NODELAY` on a listening socket: on Linux the connections it accepts inherit it
/// (they are cloned from the listener's socket), which saves a `setsockopt` per connection on
/// the accept thread (3% of its time in a burst of handshakes, BENCHMARKS.md). Every
/// connection wants it: without it a pong followed by a data frame can wait ~40 ms (Nagle's
/// algorithm against the peer's delayed ACK), and the page's responses are written whole.
pub(crate) fn set_nodelay_inherited(listener: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: plain syscall on a borrowed, open descriptor; the option value is a c_int that
    // outlives the call, and its size is passed with it.
    cvt(unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Stops this listener taking connections (Linux: `shutdown(SHUT_RD)` on a listening socket
/// makes pending and future accepts fail with EINVAL); the accept thread's epoll wait is ended
/// by its own wake-up (`Epoll::wake`).
pub(crate) fn shutdown_listener(listener: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open descriptor.
    cvt(unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) }).map(drop)
}

/// Raises this process's soft open-files limit to the hard limit and returns the new soft limit.
///
/// Every WebSocket connection holds one descriptor; the default soft limit (often 1024) would
/// cap a broadcast server far below what its memory allows. Go's runtime does the same at start.
/// ```
/// let limit = wschat::raise_fd_limit()?;
/// assert!(limit > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
// rlim_t is u64 on 64-bit Linux but u32 on 32-bit ARM (a Raspberry Pi target): the casts are
// needed there.
#[allow(clippy::unnecessary_cast)]
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit.
        if cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }).is_ok() {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur as u64)
}

/// The current soft open-files limit.
#[allow(clippy::unnecessary_cast)] // see raise_fd_limit
pub(crate) fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    match cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }) {
        Ok(_) => lim.rlim_cur as u64,
        Err(_) => 1024,
    }
}

/// An epoll instance: "tell me when this socket can take more bytes" (the dispatcher), "when
/// this parked connection speaks" (the parking thread), "when a connection or a request head
/// arrives" (the accept thread).
///
/// The first two are one-shot (`EPOLLONESHOT`): a socket is armed when a write hit `EAGAIN` or
/// it was parked, and disarmed by the event itself, so a socket with nothing pending never
/// wakes anyone. The accept thread's are level-triggered ([`Epoll::watch_readable`]).
pub(crate) struct Epoll {
    fd: OwnedFd,
    wake: OwnedFd,
}

/// The key reported when [`Epoll::wake`] was called.
pub(crate) const WAKE_KEY: u64 = u64::MAX;

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscalls; on success each returns a new descriptor that we own.
        let fd = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let wake = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        let ep = Epoll { fd, wake };
        ep.ctl(
            libc::EPOLL_CTL_ADD,
            ep.wake.as_raw_fd(),
            libc::EPOLLIN as u32,
            WAKE_KEY,
        )?;
        Ok(ep)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        // libc's epoll_event matches the kernel's on each target: packed (12 bytes) on x86_64
        // only, 16 bytes with the u64 8-aligned on aarch64 and 32-bit ARM EABI (the armv7 and
        // aarch64 runs of .ci/cross.sh exercise it). Built field by field, never by offset.
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: both descriptors are open for the call; `ev` is valid.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Arms a one-shot "writable" notification for `fd`, reported with `key`.
    ///
    /// `first` says whether this descriptor was never added before (ADD) or is being re-armed
    /// after a previous one-shot event (MOD).
    pub(crate) fn arm_writable(&self, fd: &impl AsRawFd, key: u64, first: bool) -> io::Result<()> {
        let events = (libc::EPOLLOUT | libc::EPOLLONESHOT) as u32;
        let op = if first {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        self.ctl(op, fd.as_raw_fd(), events, key)
    }

    /// Arms a one-shot "readable, or the peer hung up" notification for `fd` (see
    /// [`Epoll::arm_writable`] for `first`).
    pub(crate) fn arm_readable(&self, fd: &impl AsRawFd, key: u64, first: bool) -> io::Result<()> {
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
        let op = if first {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        self.ctl(op, fd.as_raw_fd(), events, key)
    }

    /// Watches `fd` for "readable, or the peer hung up" until [`Epoll::remove`]: reported by
    /// every wait while it holds (level-triggered), for a listener or a request head arriving.
    pub(crate) fn watch_readable(&self, fd: &impl AsRawFd, key: u64) -> io::Result<()> {
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, key)
    }

    /// Removes `fd`; call before the descriptor is closed (the caller still owns it).
    pub(crate) fn remove(&self, fd: &impl AsRawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0);
    }

    /// Blocks until at least one registered socket is ready (or [`Epoll::wake`] was called)
    /// and appends their keys to `keys`.
    pub(crate) fn wait(&self, keys: &mut Vec<u64>) -> io::Result<()> {
        self.wait_timeout(keys, -1)
    }

    /// As [`Epoll::wait`], giving up after `timeout_ms` (-1: never) with no keys.
    pub(crate) fn wait_timeout(&self, keys: &mut Vec<u64>, timeout_ms: i32) -> io::Result<()> {
        // 256 events per call: more just come on the next call; the array lives on this stack.
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
        // SAFETY: `events` is a valid writable array of the length passed; timeout -1 blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        keys.extend(events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }

    /// Makes a thread blocked in [`Epoll::wait`] return with [`WAKE_KEY`].
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 valid bytes to our own eventfd.
        unsafe {
            libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it spawns later.
///
/// ```no_run
/// // First thing in main, before any thread exists:
/// wschat::block_shutdown_signals()?;
/// let server = wschat::Server::bind(wschat::Config::default()).unwrap();
/// let handle = server.handle();
/// std::thread::spawn(move || loop {
///     match wschat::wait_signal() {
///         Ok(wschat::Signal::Terminate) => return handle.shutdown(),
///         Ok(wschat::Signal::Hangup) => drop(handle.reload_tokens()),
///         Err(_) => return,
///     }
/// });
/// server.join();
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Call it first thing in `main`: then no thread ever runs a signal handler, and one thread
/// receives the signals synchronously with [`wait_signal`] (the classic `sigwait` pattern, with no
/// async-signal-safety concerns).
pub fn block_shutdown_signals() -> io::Result<()> {
    // SAFETY: `set` is initialised by sigemptyset before use; pthread_sigmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// A signal received by [`wait_signal`] (see [`block_shutdown_signals`] for an example).
///
/// ```
/// assert_ne!(wschat::Signal::Terminate, wschat::Signal::Hangup);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM: shut down gracefully.
    Terminate,
    /// SIGHUP: reload configuration files.
    Hangup,
}

/// Waits for SIGINT, SIGTERM or SIGHUP, which must have been blocked with
/// [`block_shutdown_signals`] before any thread was spawned (whose example shows the loop).
///
/// ```no_run
/// wschat::block_shutdown_signals()?;
/// let signal = wschat::wait_signal()?; // blocks until kill -TERM / -HUP / Ctrl-C
/// println!("got {signal:?}");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait_signal() -> io::Result<Signal> {
    // SAFETY: as in block_shutdown_signals; `sig` is a valid out-parameter.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let mut sig: libc::c_int = 0;
        let rc = libc::sigwait(&set, &mut sig);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(if sig == libc::SIGHUP {
            Signal::Hangup
        } else {
            Signal::Terminate
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    /// What `set_nodelay_inherited` relies on: an accepted socket has the listener's
    /// `TCP_NODELAY`, and without it, it does not (so the check can fail).
    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        for set in [true, false] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            if set {
                super::set_nodelay_inherited(&listener).unwrap();
            }
            let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            assert_eq!(accepted.nodelay().unwrap(), set);
        }
    }
}
