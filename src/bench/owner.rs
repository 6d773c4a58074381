//! Which process serves a port: `--server-pid` is checked against the socket listening on the
//! target's port, so that a wrong PID is an error, not a report of some other process's memory
//! and CPU (a shell's PID gave "0 bytes per connection" without a word).
//!
//! Linux only, like the rest of the bench: the listening socket's inode from `/proc/net/tcp`
//! and `tcp6`, then the process's descriptors in `/proc/PID/fd` (`socket:[INODE]`).

use std::collections::HashSet;

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// The process holds a socket listening on the port.
    Yes,
    /// It holds none (or nothing listens on the port here).
    No,
    /// Its descriptors cannot be read (another user's process, without root): not checked.
    Unknown(String),
}

/// Whether process `pid` holds a socket listening on TCP `port`. `Err`: no such process.
pub fn holds_listener(pid: u32, port: u16) -> Result<Owner, String> {
    let listening: HashSet<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    let dir = format!("/proc/{pid}/fd");
    let fds = match std::fs::read_dir(&dir) {
        Ok(fds) => fds,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("--server-pid {pid}: no such process"));
        }
        Err(e) => return Ok(Owner::Unknown(format!("cannot read {dir}: {e}"))),
    };
    let held = fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok());
    for link in held {
        let inode = link
            .to_str()
            .and_then(|l| l.strip_prefix("socket:["))
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        if inode.is_some_and(|i| listening.contains(&i)) {
            return Ok(Owner::Yes);
        }
    }
    Ok(Owner::No)
}

/// The inodes of the sockets in LISTEN state on `port` in one `/proc/net/tcp`-style table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1) // the column names
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address (hex ip:port), rem_address, st, queues, tr, retrnsmt, uid,
            // timeout, inode
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *f.get(3)? == LISTEN)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listener_of_this_process_and_not_of_another() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(holds_listener(std::process::id(), port), Ok(Owner::Yes));
        // PID 1 (init, or the container's first process) does not serve our port.
        assert!(matches!(
            holds_listener(1, port),
            Ok(Owner::No | Owner::Unknown(_))
        ));
        drop(listener);
        assert_eq!(holds_listener(std::process::id(), port), Ok(Owner::No));
        assert!(holds_listener(u32::MAX, port).is_err());
    }

    #[test]
    fn reads_listening_sockets_from_a_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(table, 8080), vec![4242]);
        assert_eq!(listening_inodes(table, 8081), vec![4444]);
        assert!(listening_inodes(table, 9).is_empty());
    }
}
