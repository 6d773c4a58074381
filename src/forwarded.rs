//! Who the client is: the peer address, or, when the peer is a trusted reverse proxy, the
//! address the proxy says it forwarded for (`Forwarded`, RFC 7239, or `X-Forwarded-For`).
//!
//! Only peers listed with `--trusted-proxy` are believed: anyone else could write any address
//! into those headers. Of the forwarded chain, the right-most address that is not itself a
//! trusted proxy is the client (every hop appends; only the hops we trust wrote the part to the
//! right of it). Addresses are canonicalised (an IPv4-mapped IPv6 address is the IPv4 address,
//! as a proxy on 127.0.0.1 appears to a server bound to `[::]`), and per-address limits count
//! IPv6 clients per /64, the block one subscriber usually gets.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::http::Head;

/// An address block, `10.0.0.0/8`, `fd00::/8`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` (canonicalised) lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR` or `ADDR/PREFIX`.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("not an IP address: {addr:?}"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("not a prefix length 0-{max}: {p:?}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The key per-address limits count by: an IPv4 address, or an IPv6 address's /64.
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The client's address for a request that arrived from `peer`.
pub(crate) fn client_ip(peer: IpAddr, head: &Head, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain = forwarded_chain(head);
    // Right to left: skip our own proxies; the first other address is the client. A hop we
    // cannot read ends the walk at the last address we could trust.
    let mut client = peer;
    for hop in chain.iter().rev() {
        let Some(ip) = hop else {
            break;
        };
        client = canonical(*ip);
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// The forwarded-for addresses, oldest (the original client) first; `None` for a hop that is
/// not an address (`unknown`, an obfuscated identifier, garbage). `Forwarded` wins over
/// `X-Forwarded-For` when both are present: it is the standard, and a proxy that writes it
/// means it.
fn forwarded_chain(head: &Head) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<&str> {
        head.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .collect()
    };
    // Bounded: a header line is at most the head's size (16 KiB); hops beyond 64 are junk.
    const MAX_HOPS: usize = 64;
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .take(MAX_HOPS)
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| node_ip(v.trim()))
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .take(MAX_HOPS)
        .map(|hop| node_ip(hop.trim()))
        .collect()
}

/// An address from a `for=` node or an X-Forwarded-For entry: `192.0.2.1`, `"192.0.2.1:4711"`,
/// `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    // IPv4 with a port.
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Head {
        Head {
            method: "GET".into(),
            target: "/".into(),
            minor_version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            rest: Vec::new(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "v4-mapped is v4");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let odd: Cidr = "192.168.1.128/25".parse().unwrap();
        assert!(odd.contains(ip("192.168.1.200")) && !odd.contains(ip("192.168.1.100")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0.0/x",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn untrusted_peers_are_believed_only_about_themselves() {
        let h = head(&[("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=5.6.7.8")]);
        assert_eq!(client_ip(ip("9.9.9.9"), &h, &[]), ip("9.9.9.9"));
        assert_eq!(
            client_ip(ip("9.9.9.9"), &h, &cidrs(&["127.0.0.1"])),
            ip("9.9.9.9")
        );
        assert_eq!(
            client_ip(ip("::ffff:9.9.9.9"), &h, &[]),
            ip("9.9.9.9"),
            "canonical even when not trusted"
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = cidrs(&["127.0.0.1", "10.0.0.0/8"]);
        // The client forged a first entry; our proxies appended the real one and themselves.
        let h = head(&[("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.7"));
        // A proxy on 127.0.0.1 seen by a server bound to [::].
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("203.0.113.7")
        );
        // Forwarded (RFC 7239) with quoting, ports and IPv6, and it wins over XFF.
        let h = head(&[
            ("X-Forwarded-For", "6.6.6.6"),
            (
                "Forwarded",
                r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.2"#,
            ),
        ]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &trusted),
            ip("2001:db8:cafe::17")
        );
        // Several header lines are one list, in order.
        let h = head(&[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-For", "198.51.100.4"),
        ]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.4"));
        // A proxy without the header: the proxy is all we know.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &head(&[]), &trusted),
            ip("127.0.0.1")
        );
        // Garbage or `unknown` ends the walk at the last trusted hop, never at forged data.
        for junk in ["6.6.6.6, unknown", "6.6.6.6, not-an-ip", "6.6.6.6, _hidden"] {
            let h = head(&[("X-Forwarded-For", junk)]);
            assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
        }
        let h = head(&[("X-Forwarded-For", "203.0.113.9:5555")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn limits_count_ipv6_per_64() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_ne!(limit_key(ip("1.2.3.4")), limit_key(ip("1.2.3.5")));
    }
}
