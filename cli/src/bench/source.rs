//! Where the clients connect from.
//!
//! A TCP connection is told apart by its (source address, source port, server address, server
//! port), so one source address can open at most as many connections to one server address as
//! the ephemeral port range (`net.ipv4.ip_local_port_range`) has ports: 28,232 with Linux's
//! default 32768–60999. Past that, the clients must come from more source addresses:
//! `--source-addresses` gives them, and against a server on IPv4 loopback the bench picks them
//! itself, because every 127/8 address is local on Linux (127.0.0.1, 127.0.0.2, ...).
//!
//! A client with a source address binds its socket to `(address, 0)` before connecting. Such a
//! bind takes a port of its own on that address, which rules out the ports of connections still
//! in `TIME_WAIT` (those of a previous run, for a minute), so the automatic choice counts the
//! ports already taken on each address (`/proc/net/tcp`) and skips addresses too full for their
//! share.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::bail;
use serde::Serialize;
use tokio::net::TcpSocket;

/// Ports of the range kept free for the machine's other connections (the publisher, the broker,
/// anything else running), on top of those already in use; an eighth of a smaller range.
pub(crate) const PORT_MARGIN: u64 = 1000;

/// The ports one source address offers the clients: the range less the margin.
pub(crate) fn ports_per_address(range: (u16, u16)) -> u64 {
    let ports = ports_in(range);
    ports - PORT_MARGIN.min(ports / 8)
}

/// Linux's default ephemeral port range, when `/proc` does not tell.
const DEFAULT_PORT_RANGE: (u16, u16) = (32768, 60999);

/// The most loopback addresses the automatic choice uses (127.0.0.1 to 127.0.0.254): millions
/// of connections, far more than one machine's memory holds.
const MAX_LOOPBACK_ADDRESSES: u8 = 254;

/// How the source addresses were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Choice {
    /// None given or needed: the kernel picks the source of each connection.
    Kernel,
    /// `--source-addresses`.
    Given,
    /// Loopback addresses picked because `--clients` exceeds one address's ports.
    Automatic,
}

/// The source addresses of a run: client `i` connects from `addresses[i % n]`; none means the
/// kernel chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourcePlan {
    pub(crate) addresses: Vec<IpAddr>,
    pub(crate) choice: Choice,
    /// Said on stderr before the run: why the addresses were picked, or why they may not do.
    pub(crate) note: Option<String>,
}

/// The ephemeral port range (`lo hi`), as `/proc/sys/net/ipv4/ip_local_port_range` gives it.
pub(crate) fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut fields = text.split_whitespace();
    let lo: u16 = fields.next()?.parse().ok()?;
    let hi: u16 = fields.next()?.parse().ok()?;
    (fields.next().is_none() && lo <= hi).then_some((lo, hi))
}

/// Ports in a range, both ends included.
pub(crate) fn ports_in(range: (u16, u16)) -> u64 {
    u64::from(range.1) - u64::from(range.0) + 1
}

/// This machine's ephemeral port range.
fn port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_port_range(&text))
        .unwrap_or(DEFAULT_PORT_RANGE)
}

/// `--source-addresses`: comma-separated IP addresses.
pub(crate) fn parse_list(text: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut addresses = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<IpAddr>() {
            Ok(ip) => addresses.push(ip),
            Err(_) => bail!(
                "--source-addresses: {item:?} is not an IP address; give a comma-separated list, e.g. 127.0.0.2,127.0.0.3"
            ),
        }
    }
    if addresses.is_empty() {
        bail!("--source-addresses is empty; give a comma-separated list, e.g. 127.0.0.2,127.0.0.3");
    }
    Ok(addresses)
}

/// Plans the source addresses of `clients` connections to `server`: the given ones, loopback
/// addresses when one address cannot hold them all, or none. Reads the port range and the ports
/// in use from `/proc`.
pub(crate) fn plan(
    given: Option<&str>,
    server: SocketAddr,
    clients: usize,
) -> anyhow::Result<SourcePlan> {
    let range = port_range();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let in_use = ports_in_use(&tcp, range);
    plan_with(given, server, clients as u64, range, &|ip| {
        in_use.get(&ip).map_or(0, |ports| ports.len() as u64)
    })
}

/// [`plan`] with the port range and the ports in use per address given.
fn plan_with(
    given: Option<&str>,
    server: SocketAddr,
    clients: u64,
    range: (u16, u16),
    in_use: &dyn Fn(Ipv4Addr) -> u64,
) -> anyhow::Result<SourcePlan> {
    let ports = ports_in(range);
    let per_address = ports_per_address(range);
    let range_text = format!(
        "ports {}-{} of net.ipv4.ip_local_port_range: {ports}, of which {per_address} for the clients",
        range.0, range.1
    );
    if let Some(text) = given {
        let addresses = parse_list(text)?;
        if let Some(other) = addresses.iter().find(|a| a.is_ipv4() != server.is_ipv4()) {
            bail!(
                "--source-addresses: {other} cannot connect to {server} (one is IPv4, the other IPv6); give addresses of the server's family"
            );
        }
        let share = clients.div_ceil(addresses.len() as u64);
        let note = (share > per_address).then(|| {
            format!(
                "warning: {share} clients per source address is more than one address can open to {server} ({range_text}); connects may fail: give more --source-addresses"
            )
        });
        return Ok(SourcePlan {
            addresses,
            choice: Choice::Given,
            note,
        });
    }
    let kernel = |note| SourcePlan {
        addresses: Vec::new(),
        choice: Choice::Kernel,
        note,
    };
    if clients <= per_address {
        return Ok(kernel(None));
    }
    let IpAddr::V4(server_ip) = server.ip() else {
        return Ok(kernel(Some(format!(
            "warning: {clients} clients are more than one source address can open to {server} ({range_text}); give --source-addresses (addresses configured on this machine)"
        ))));
    };
    if !server_ip.is_loopback() {
        return Ok(kernel(Some(format!(
            "warning: {clients} clients are more than one source address can open to {server} ({range_text}); give --source-addresses (addresses configured on this machine)"
        ))));
    }
    // The fewest addresses whose free ports hold an equal share each, skipping full ones.
    let candidates: Vec<(Ipv4Addr, u64)> = (1..=MAX_LOOPBACK_ADDRESSES)
        .map(|last| {
            let ip = Ipv4Addr::new(127, 0, 0, last);
            (ip, per_address.saturating_sub(in_use(ip)))
        })
        .collect();
    let fewest = clients.div_ceil(per_address);
    for n in fewest..=u64::from(MAX_LOOPBACK_ADDRESSES) {
        let share = clients.div_ceil(n);
        let picked: Vec<IpAddr> = candidates
            .iter()
            .filter(|(_, free)| *free >= share)
            .take(n as usize)
            .map(|(ip, _)| IpAddr::V4(*ip))
            .collect();
        if picked.len() as u64 == n {
            let skipped = candidates
                .iter()
                .take_while(|(ip, _)| IpAddr::V4(*ip) != picked[picked.len() - 1])
                .filter(|(ip, _)| !picked.contains(&IpAddr::V4(*ip)))
                .count();
            let listed = picked
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let busy = if skipped > 0 {
                format!(" ({skipped} skipped: their ports are taken, e.g. in TIME_WAIT)")
            } else {
                String::new()
            };
            let note = format!(
                "note: {clients} clients are more than one source address can open to {server} ({range_text}): connecting from {n} loopback addresses, about {share} each: {listed}{busy}; --source-addresses chooses them"
            );
            return Ok(SourcePlan {
                addresses: picked,
                choice: Choice::Automatic,
                note: Some(note),
            });
        }
    }
    bail!(
        "{clients} clients do not fit in the free ports of 127.0.0.1-127.0.0.{MAX_LOOPBACK_ADDRESSES} ({range_text}); give --source-addresses"
    )
}

/// The ports of `range` taken on each IPv4 address, from `/proc/net/tcp` (every state,
/// `TIME_WAIT` included: a bind to a source address cannot take them).
fn ports_in_use(tcp: &str, range: (u16, u16)) -> HashMap<Ipv4Addr, HashSet<u16>> {
    let mut in_use: HashMap<Ipv4Addr, HashSet<u16>> = HashMap::new();
    for line in tcp.lines().skip(1) {
        // `sl local_address rem_address st ...`; the address is the raw 32-bit value in the
        // kernel's (network) byte order printed as a native integer, the port is host order.
        let Some(local) = line.split_whitespace().nth(1) else {
            continue;
        };
        let Some((addr, port)) = local.split_once(':') else {
            continue;
        };
        let (Ok(addr), Ok(port)) = (u32::from_str_radix(addr, 16), u16::from_str_radix(port, 16))
        else {
            continue;
        };
        if (range.0..=range.1).contains(&port) {
            in_use
                .entry(Ipv4Addr::from(addr.to_ne_bytes()))
                .or_default()
                .insert(port);
        }
    }
    in_use
}

/// Binds a socket to each address once, so that an address this machine does not have is an
/// error before any client starts.
pub(crate) fn check_bindable(addresses: &[IpAddr]) -> anyhow::Result<()> {
    for &address in addresses {
        let socket =
            new_socket(address).map_err(|e| anyhow::anyhow!("{}", bind_error(address, &e)))?;
        socket
            .bind(SocketAddr::new(address, 0))
            .map_err(|e| anyhow::anyhow!("{}", bind_error(address, &e)))?;
    }
    Ok(())
}

/// A TCP socket of the address's family.
pub(crate) fn new_socket(address: IpAddr) -> std::io::Result<TcpSocket> {
    if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// Why a bind to a source address failed, and what to do.
pub(crate) fn bind_error(address: IpAddr, error: &std::io::Error) -> String {
    let fix = match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "its ports are all taken (connections open or in TIME_WAIT); give more --source-addresses, or wait a minute"
        }
        _ => {
            "give --source-addresses configured on this machine (`ip -brief address`; every 127/8 address is local on Linux)"
        }
    };
    format!("cannot bind a client socket to source address {address}: {error}; {fix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "127.0.0.1:5000";

    fn nothing_in_use(_: Ipv4Addr) -> u64 {
        0
    }

    fn v4(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(ports_in((32768, 60999)), 28_232);
        assert_eq!(parse_port_range("40000 40999"), Some((40000, 40999)));
        assert_eq!(ports_in((40000, 40999)), 1000);
        assert_eq!(parse_port_range("5 4"), None);
        assert_eq!(parse_port_range("1"), None);
        assert_eq!(parse_port_range("1 2 3"), None);
        assert_eq!(parse_port_range("a b"), None);
    }

    #[test]
    fn source_lists() {
        assert_eq!(
            parse_list("127.0.0.2, 127.0.0.3,").unwrap(),
            vec![v4("127.0.0.2"), v4("127.0.0.3")]
        );
        assert!(parse_list("").unwrap_err().to_string().contains("empty"));
        assert!(
            parse_list("127.0.0.2,localhost")
                .unwrap_err()
                .to_string()
                .contains("\"localhost\" is not an IP address")
        );
    }

    #[test]
    fn one_address_while_the_clients_fit_its_ports() {
        let range = (32768, 60999);
        let server = SERVER.parse().unwrap();
        for clients in [1, 1000, 27_232] {
            let plan = plan_with(None, server, clients, range, &nothing_in_use).unwrap();
            assert_eq!(plan.choice, Choice::Kernel, "{clients}");
            assert!(plan.addresses.is_empty());
            assert_eq!(plan.note, None);
        }
    }

    #[test]
    fn as_many_loopback_addresses_as_the_clients_need() {
        let range = (32768, 60999);
        let server = SERVER.parse().unwrap();
        // 28,232 ports less the margin: 27,232 per address.
        for (clients, addresses) in [
            (27_233, 2),
            (50_000, 2),
            (54_464, 2),
            (54_465, 3),
            (100_000, 4),
        ] {
            let plan = plan_with(None, server, clients, range, &nothing_in_use).unwrap();
            assert_eq!(plan.choice, Choice::Automatic);
            let expected: Vec<IpAddr> = (1..=addresses)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect();
            assert_eq!(plan.addresses, expected, "{clients}");
            assert!(plan.note.unwrap().contains("loopback addresses"));
        }
        // A range of 1,000 ports keeps an eighth (125) as the margin: 875 per address.
        let small = (40000, 40999);
        assert_eq!(ports_per_address(small), 875);
        let plan = plan_with(None, server, 2500, small, &nothing_in_use).unwrap();
        assert_eq!(plan.addresses.len(), 3, "{plan:?}");
    }

    #[test]
    fn addresses_whose_ports_are_taken_are_skipped() {
        let range = (40000, 42999); // 3,000 ports, 2,625 after the margin (an eighth)
        let server = SERVER.parse().unwrap();
        // 127.0.0.1 holds 1,500 connections in TIME_WAIT: 1,125 free, too few for a share of 1,500.
        let busy = |ip: Ipv4Addr| if ip == Ipv4Addr::LOCALHOST { 1500 } else { 0 };
        let plan = plan_with(None, server, 3000, range, &busy).unwrap();
        assert_eq!(plan.addresses, vec![v4("127.0.0.2"), v4("127.0.0.3")]);
        assert!(plan.note.unwrap().contains("1 skipped"));
        // With 1,000 taken, 1,625 are free: enough.
        let busy = |ip: Ipv4Addr| if ip == Ipv4Addr::LOCALHOST { 1000 } else { 0 };
        let plan = plan_with(None, server, 3000, range, &busy).unwrap();
        assert_eq!(plan.addresses, vec![v4("127.0.0.1"), v4("127.0.0.2")]);
        assert!(!plan.note.unwrap().contains("skipped"));
    }

    #[test]
    fn given_addresses_are_used_as_given() {
        let range = (32768, 60999);
        let server = SERVER.parse().unwrap();
        let plan = plan_with(
            Some("127.0.0.2,127.0.0.3"),
            server,
            10,
            range,
            &nothing_in_use,
        )
        .unwrap();
        assert_eq!(plan.choice, Choice::Given);
        assert_eq!(plan.addresses, vec![v4("127.0.0.2"), v4("127.0.0.3")]);
        assert_eq!(plan.note, None);
        let crowded = plan_with(Some("127.0.0.2"), server, 30_000, range, &nothing_in_use).unwrap();
        assert!(
            crowded
                .note
                .unwrap()
                .contains("give more --source-addresses")
        );
        let err = plan_with(Some("::1"), server, 10, range, &nothing_in_use).unwrap_err();
        assert!(err.to_string().contains("IPv4"), "{err}");
    }

    #[test]
    fn no_automatic_spreading_away_from_ipv4_loopback() {
        let range = (32768, 60999);
        for server in ["10.1.2.3:5000", "[::1]:5000"] {
            let plan = plan_with(
                None,
                server.parse().unwrap(),
                30_000,
                range,
                &nothing_in_use,
            )
            .unwrap();
            assert_eq!(plan.choice, Choice::Kernel);
            assert!(plan.note.unwrap().contains("give --source-addresses"));
        }
    }

    #[test]
    fn ports_in_use_per_address() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                   0: 0100007F:9C41 0100007F:1388 06 00000000:00000000 03:00000000 00000000     0        0 0 3\n\
                   1: 0100007F:9C42 0100007F:1388 01 00000000:00000000 00:00000000 00000000  1000        0 1 1\n\
                   2: 0100007F:1388 0100007F:9C42 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
                   3: 0200007F:9C41 0100007F:1388 01 00000000:00000000 00:00000000 00000000  1000        0 3 1\n";
        let in_use = ports_in_use(tcp, (40000, 40999));
        // 0x9C41 = 40001, 0x9C42 = 40002; the server's port 5000 is outside the range.
        assert_eq!(in_use[&Ipv4Addr::new(127, 0, 0, 1)].len(), 2);
        assert_eq!(in_use[&Ipv4Addr::new(127, 0, 0, 2)].len(), 1);
    }

    #[test]
    fn a_missing_address_is_a_clear_bind_error() {
        // 192.0.2.0/24 is reserved for documentation: no machine has it.
        let err = check_bindable(&[v4("127.0.0.2"), v4("192.0.2.1")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("192.0.2.1"), "{text}");
        assert!(text.contains("configured on this machine"), "{text}");
    }
}
