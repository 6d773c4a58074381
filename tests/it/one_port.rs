//! The server process listens on exactly one TCP port, its `--addr`: no private page server
//! port that a local process could use to get past the limits.

use crate::common::*;
use std::collections::HashSet;

/// The socket inodes among `pid`'s open descriptors.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Ports of the listening (state 0A) TCP sockets in `/proc/PID/net/tcp` and `tcp6` whose inode
/// is one of `inodes`.
fn listening_ports(pid: u32, inodes: &HashSet<u64>) -> Vec<u16> {
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue; // no IPv6 in this kernel
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state != "0A" || !inode.parse().is_ok_and(|i: u64| inodes.contains(&i)) {
                continue;
            }
            let port = local.rsplit(':').next().unwrap();
            ports.push(u16::from_str_radix(port, 16).unwrap());
        }
    }
    ports
}

#[test]
fn the_process_listens_on_its_addr_only() {
    let (mut child, addr) = spawn_binary(&["--api-key", "k"]);
    let pid = child.id();
    // The address line is printed after the server started all its threads.
    let ports = listening_ports(pid, &socket_inodes(pid));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ports, vec![addr.port()], "listening ports of pid {pid}");
}
