//! Where the clients connect from.
//!
//! A TCP connection is told apart by its (source address, source port, server address, server
//! port), so one source address can open at most as many connections to one server address as
//! the ephemeral port range (`net.ipv4.ip_local_port_range`) has ports: 28,232 with Linux's
//! default 32768–60999. Past that, the clients must come from more source addresses:
//! `--source-addresses` gives them, and against a server on IPv4 loopback the bench picks them
//! itself, because every 127/8 address is local on Linux (127.0.0.1, 127.0.0.2, ...).
//!
//! A client with a source address binds its socket to an address and a port before connecting.
//! The ports are chosen here, not by the kernel, because of how Linux shares them out: while any
//! socket holds a port it bound explicitly (on any address, and for a minute after it closed, in
//! `TIME_WAIT`), the kernel's automatic choice for an unbound `connect` skips that port on every
//! address. Left to `bind(address, 0)`, several addresses would each take ports all over the
//! range, and the publisher (or any other program on the machine) would find none left. So
//! client `i` uses address `i mod n` and the `i / n`-th port of one shared list, the same ports
//! on every address: the clients hold no more ports than one address's share, and the rest of the
//! range stays free. The list skips the ports already taken on those addresses (`/proc/net/tcp`,
//! `TIME_WAIT` included), and the automatic choice skips addresses too full for their share
//! (those of a run that just ended).

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

/// The source addresses of a run: client `i` connects from `addresses[i % n]` and port
/// `ports[i / n]` (the kernel's choice past the list's end); no addresses means the kernel
/// chooses both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourcePlan {
    pub(crate) addresses: Vec<IpAddr>,
    pub(crate) ports: Vec<u16>,
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

/// Plans the source addresses (and ports) of `clients` connections to `server`: the given
/// addresses, loopback addresses when one address cannot hold them all, or none. Reads the port
/// range and the ports in use from `/proc`.
pub(crate) fn plan(
    given: Option<&str>,
    server: SocketAddr,
    clients: usize,
) -> anyhow::Result<SourcePlan> {
    let range = port_range();
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let in_use = ports_in_use(&read("/proc/net/tcp"), &read("/proc/net/tcp6"), range);
    plan_with(given, server, clients as u64, range, &in_use)
}

/// The ports of `range` in use on each IPv4 address; wildcard sockets (`0.0.0.0`, `::`) under
/// [`Ipv4Addr::UNSPECIFIED`].
type InUse = HashMap<Ipv4Addr, HashSet<u16>>;

/// [`plan`] with the port range and the ports in use given.
fn plan_with(
    given: Option<&str>,
    server: SocketAddr,
    clients: u64,
    range: (u16, u16),
    in_use: &InUse,
) -> anyhow::Result<SourcePlan> {
    let ports = ports_in(range);
    let per_address = ports_per_address(range);
    let range_text = format!(
        "ports {}-{} of net.ipv4.ip_local_port_range: {ports}, of which {per_address} for the clients",
        range.0, range.1
    );
    let taken = |ip: &Ipv4Addr| in_use.get(ip).map_or(0, |p| p.len() as u64);
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
        let ports = shared_ports(range, &addresses, in_use, share.min(per_address));
        return Ok(SourcePlan {
            addresses,
            ports,
            choice: Choice::Given,
            note,
        });
    }
    let kernel = |note| SourcePlan {
        addresses: Vec::new(),
        ports: Vec::new(),
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
    // The fewest addresses that hold an equal share each on ports free on all of them, skipping
    // addresses whose own ports are too taken.
    let wildcard = taken(&Ipv4Addr::UNSPECIFIED);
    let candidates: Vec<Ipv4Addr> = (1..=MAX_LOOPBACK_ADDRESSES)
        .map(|last| Ipv4Addr::new(127, 0, 0, last))
        .collect();
    let fewest = clients.div_ceil(per_address);
    for n in fewest..=u64::from(MAX_LOOPBACK_ADDRESSES) {
        let share = clients.div_ceil(n);
        let picked: Vec<IpAddr> = candidates
            .iter()
            .filter(|ip| per_address.saturating_sub(taken(ip) + wildcard) >= share)
            .take(n as usize)
            .map(|ip| IpAddr::V4(*ip))
            .collect();
        if picked.len() as u64 != n {
            continue;
        }
        let ports = shared_ports(range, &picked, in_use, share);
        if (ports.len() as u64) < share {
            continue;
        }
        let last = picked[picked.len() - 1];
        let skipped = candidates
            .iter()
            .take_while(|ip| IpAddr::V4(**ip) != last)
            .filter(|ip| !picked.contains(&IpAddr::V4(**ip)))
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
            ports,
            choice: Choice::Automatic,
            note: Some(note),
        });
    }
    bail!(
        "{clients} clients do not fit in the free ports of 127.0.0.1-127.0.0.{MAX_LOOPBACK_ADDRESSES} ({range_text}); give --source-addresses"
    )
}

/// Up to `want` ports of the range, lowest first, free on every one of `addresses` and on the
/// wildcard address. None for IPv6 addresses, whose ports are not read: the kernel picks them.
fn shared_ports(range: (u16, u16), addresses: &[IpAddr], in_use: &InUse, want: u64) -> Vec<u16> {
    let mut sets = vec![in_use.get(&Ipv4Addr::UNSPECIFIED)];
    for address in addresses {
        match address {
            IpAddr::V4(ip) => sets.push(in_use.get(ip)),
            IpAddr::V6(_) => return Vec::new(),
        }
    }
    (range.0..=range.1)
        .filter(|port| !sets.iter().flatten().any(|set| set.contains(port)))
        .take(usize::try_from(want).unwrap_or(usize::MAX))
        .collect()
}

/// The ports of `range` taken on each IPv4 address, from `/proc/net/tcp` (every state,
/// `TIME_WAIT` included: a bind to that address and port would fail), and those of wildcard
/// sockets from `/proc/net/tcp6` too (a dual-stack `[::]` listener takes its port on every IPv4
/// address).
fn ports_in_use(tcp: &str, tcp6: &str, range: (u16, u16)) -> InUse {
    let mut in_use = InUse::new();
    // `sl local_address rem_address st ...`, the address in hex, the port in hex after a colon.
    let local = |line: &str| -> Option<(String, u16)> {
        let (addr, port) = line.split_whitespace().nth(1)?.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        (range.0..=range.1)
            .contains(&port)
            .then(|| (addr.to_owned(), port))
    };
    for (addr, port) in tcp.lines().skip(1).filter_map(local) {
        // The raw 32-bit address, in network byte order, printed as a native integer.
        if let Ok(raw) = u32::from_str_radix(&addr, 16) {
            in_use
                .entry(Ipv4Addr::from(raw.to_ne_bytes()))
                .or_default()
                .insert(port);
        }
    }
    for (addr, port) in tcp6.lines().skip(1).filter_map(local) {
        if addr.bytes().all(|b| b == b'0') {
            in_use
                .entry(Ipv4Addr::UNSPECIFIED)
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

    fn nothing() -> InUse {
        InUse::new()
    }

    /// `count` ports of the range taken on `ip`, from its lowest.
    fn taken(ip: Ipv4Addr, range: (u16, u16), count: u16) -> InUse {
        InUse::from([(ip, (range.0..range.0 + count).collect())])
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
            let plan = plan_with(None, server, clients, range, &nothing()).unwrap();
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
            let plan = plan_with(None, server, clients, range, &nothing()).unwrap();
            assert_eq!(plan.choice, Choice::Automatic);
            let expected: Vec<IpAddr> = (1..=addresses)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect();
            assert_eq!(plan.addresses, expected, "{clients}");
            assert!(plan.note.unwrap().contains("loopback addresses"));
            // One share of ports, the same on every address: the lowest of the range.
            let share = clients.div_ceil(addresses.into());
            assert_eq!(plan.ports.len() as u64, share, "{clients}");
            assert_eq!(plan.ports[0], 32768);
            assert!(plan.ports.windows(2).all(|w| w[1] == w[0] + 1));
        }
        // A range of 1,000 ports keeps an eighth (125) as the margin: 875 per address.
        let small = (40000, 40999);
        assert_eq!(ports_per_address(small), 875);
        let plan = plan_with(None, server, 2500, small, &nothing()).unwrap();
        assert_eq!(plan.addresses.len(), 3, "{plan:?}");
    }

    #[test]
    fn addresses_whose_ports_are_taken_are_skipped() {
        let range = (40000, 42999); // 3,000 ports, 2,625 after the margin (an eighth)
        let server = SERVER.parse().unwrap();
        // 127.0.0.1 holds 1,500 connections in TIME_WAIT: 1,125 free, too few for a share of 1,500.
        let busy = taken(Ipv4Addr::LOCALHOST, range, 1500);
        let plan = plan_with(None, server, 3000, range, &busy).unwrap();
        assert_eq!(plan.addresses, vec![v4("127.0.0.2"), v4("127.0.0.3")]);
        assert!(plan.note.unwrap().contains("1 skipped"));
        // The ports of the skipped address may be reused on the others: the same 1,500 ports.
        assert_eq!(plan.ports, (40000..41500).collect::<Vec<_>>());
        // With 1,000 taken, 1,625 are free: enough; the shared ports avoid the taken ones.
        let busy = taken(Ipv4Addr::LOCALHOST, range, 1000);
        let plan = plan_with(None, server, 3000, range, &busy).unwrap();
        assert_eq!(plan.addresses, vec![v4("127.0.0.1"), v4("127.0.0.2")]);
        assert!(!plan.note.unwrap().contains("skipped"));
        assert_eq!(plan.ports, (41000..42500).collect::<Vec<_>>());
        // A wildcard listener's port is taken on every address.
        let mut busy = nothing();
        busy.insert(Ipv4Addr::UNSPECIFIED, HashSet::from([40001]));
        let plan = plan_with(None, server, 3000, range, &busy).unwrap();
        assert_eq!(plan.ports[..2], [40000, 40002]);
    }

    #[test]
    fn given_addresses_are_used_as_given() {
        let range = (32768, 60999);
        let server = SERVER.parse().unwrap();
        let plan = plan_with(Some("127.0.0.2,127.0.0.3"), server, 10, range, &nothing()).unwrap();
        assert_eq!(plan.choice, Choice::Given);
        assert_eq!(plan.addresses, vec![v4("127.0.0.2"), v4("127.0.0.3")]);
        assert_eq!(plan.ports, (32768..32773).collect::<Vec<_>>());
        assert_eq!(plan.note, None);
        let crowded = plan_with(Some("127.0.0.2"), server, 30_000, range, &nothing()).unwrap();
        assert!(
            crowded
                .note
                .unwrap()
                .contains("give more --source-addresses")
        );
        let err = plan_with(Some("::1"), server, 10, range, &nothing()).unwrap_err();
        assert!(err.to_string().contains("IPv4"), "{err}");
    }

    #[test]
    fn no_automatic_spreading_away_from_ipv4_loopback() {
        let range = (32768, 60999);
        for server in ["10.1.2.3:5000", "[::1]:5000"] {
            let plan = plan_with(None, server.parse().unwrap(), 30_000, range, &nothing()).unwrap();
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
        let tcp6 = "  sl  local_address                         remote_address                        st\n\
                    0: 00000000000000000000000000000000:9C43 00000000000000000000000000000000:0000 0A\n\
                    1: 00000000000000000000000001000000:9C44 00000000000000000000000000000000:0000 0A\n";
        let in_use = ports_in_use(tcp, tcp6, (40000, 40999));
        // 0x9C41 = 40001, 0x9C42 = 40002; the server's port 5000 is outside the range.
        assert_eq!(in_use[&Ipv4Addr::new(127, 0, 0, 1)].len(), 2);
        assert_eq!(in_use[&Ipv4Addr::new(127, 0, 0, 2)].len(), 1);
        // [::]:40003 listens on every address; [::1]:40004 on none of IPv4's.
        assert_eq!(in_use[&Ipv4Addr::UNSPECIFIED], HashSet::from([40003]));
        assert_eq!(in_use.len(), 3);
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
