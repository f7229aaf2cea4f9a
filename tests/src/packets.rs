//! Hostile packets, crafted and captured with pnet.
//!
//! Three pieces, all namespace-aware:
//!
//! * [`in_netns`] runs a closure on a fresh thread that has joined a network
//!   namespace (`setns` is per thread), so sockets it opens live there.
//! * [`hostile_cases`] builds raw IPv4 packets — TCP with odd flag sets,
//!   fragments, IP options, data on SYN — and [`send_cases`] sends them from
//!   a namespace through a layer-3 pnet transport channel (`IP_HDRINCL`), so
//!   the kernel forwards them exactly as written (it only fills in the IPv4
//!   checksum and total length, which are already right).
//! * [`Capture`] / [`capture`] record every IPv4/IPv6 packet seen on an
//!   interface inside a namespace (an `AF_PACKET` socket through pnet's
//!   datalink channel), for a bounded time.
//!
//! The gateway's tc classifier runs before IP reassembly and before any
//! netfilter hook, so a capture on the database host's link sees exactly what
//! the classifier let through.
#![allow(unsafe_code)]

use std::{
    fmt,
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use pnet::{
    datalink::{self, Channel},
    packet::{
        Packet,
        ethernet::{EtherTypes, EthernetPacket},
        ip::{IpNextHeaderProtocol, IpNextHeaderProtocols},
        ipv4::{self, Ipv4Flags, Ipv4Packet, MutableIpv4Packet},
        ipv6::Ipv6Packet,
        tcp::{self, MutableTcpPacket, TcpFlags},
    },
    transport::{TransportChannelType, transport_channel},
};

/// Run `f` on a new thread that has joined the network namespace at
/// `ns_path` (e.g. `/run/netns/NAME`), and return its result. Sockets created
/// by `f` belong to that namespace. Panics (on the calling thread) if the
/// namespace cannot be entered or `f` panics.
pub fn in_netns<T: Send>(ns_path: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let ns = File::open(ns_path)
                .unwrap_or_else(|e| panic!("open network namespace {ns_path}: {e}"));
            // SAFETY: `ns` is an open file descriptor for the duration of the
            // call; setns only changes this (freshly spawned, otherwise
            // unused) thread's network namespace and touches no Rust memory.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                panic!("setns({ns_path}): {}", io::Error::last_os_error());
            }
            drop(ns);
            f()
        });
        match worker.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// One hostile scenario: a name and the raw IPv4 packets (full headers) that
/// make it up, sent in order.
#[derive(Clone, Debug)]
pub struct HostileCase {
    pub name: &'static str,
    /// The TCP source port every packet of the case uses (distinct per case,
    /// so captures can be matched back to cases).
    pub sport: u16,
    /// Whether every packet of the case is an IPv4 fragment.
    pub fragmented: bool,
    pub packets: Vec<Vec<u8>>,
}

/// A tiny xorshift generator: random enough for ports, sequence numbers and
/// IP ids, with no extra dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 16) as u32
    }
    fn u16(&mut self) -> u16 {
        (self.next() >> 24) as u16
    }
}

/// Distinct random high source ports (40000..=60999), one per case.
fn distinct_ports(rng: &mut Rng, n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    // Bounded: 21000 candidates, a handful of cases.
    for _ in 0..10_000 {
        if ports.len() == n {
            break;
        }
        let p = 40_000 + (rng.u32() % 21_000) as u16;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    assert_eq!(ports.len(), n, "could not pick {n} distinct source ports");
    ports
}

/// TCP options for a SYN: MSS 1460.
const MSS_OPTION: [u8; 4] = [2, 4, 0x05, 0xb4];

/// A TCP segment (header + payload) with a correct checksum for `src`→`dst`.
/// `options` must be a multiple of 4 bytes.
#[allow(clippy::too_many_arguments)]
fn tcp_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(
        options.len() % 4,
        0,
        "TCP options must be padded to 4 bytes"
    );
    let header = 20 + options.len();
    let mut buf = vec![0u8; header + payload.len()];
    // Options are written as raw bytes: pnet's typed option setter would
    // re-encode them, and we want exactly these bytes on the wire.
    buf[20..header].copy_from_slice(options);
    let mut tcp = MutableTcpPacket::new(&mut buf).expect("buffer holds a TCP header");
    tcp.set_source(sport);
    tcp.set_destination(dport);
    tcp.set_sequence(seq);
    tcp.set_acknowledgement(ack);
    tcp.set_data_offset((header / 4) as u8);
    tcp.set_flags(flags);
    tcp.set_window(64_240);
    tcp.set_urgent_ptr(if flags & TcpFlags::URG != 0 { 1 } else { 0 });
    tcp.set_payload(payload);
    let sum = tcp::ipv4_checksum(&tcp.to_immutable(), &src, &dst);
    tcp.set_checksum(sum);
    buf
}

/// An IPv4 packet around `payload` (already-built transport bytes or a slice
/// of them). `frag_offset` is in 8-byte units; `options` must be a multiple
/// of 4 bytes. The header checksum is correct.
fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    more_fragments: bool,
    frag_offset: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "IP options must be padded to 4 bytes");
    let header = 20 + options.len();
    let total = header + payload.len();
    let mut buf = vec![0u8; total];
    buf[20..header].copy_from_slice(options);
    let mut ip = MutableIpv4Packet::new(&mut buf).expect("buffer holds an IPv4 header");
    ip.set_version(4);
    ip.set_header_length((header / 4) as u8);
    ip.set_dscp(0);
    ip.set_ecn(0);
    ip.set_total_length(total as u16);
    ip.set_identification(id);
    ip.set_flags(if more_fragments {
        Ipv4Flags::MoreFragments
    } else {
        0
    });
    ip.set_fragment_offset(frag_offset);
    ip.set_ttl(64);
    ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
    ip.set_source(src);
    ip.set_destination(dst);
    ip.set_payload(payload);
    let sum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(sum);
    buf
}

/// A PostgreSQL startup message (protocol 3.0): what a driver would put in
/// the SYN's data with TCP fast open.
fn pg_startup_message() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for s in ["user", "agent", "database", "postgres", ""] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// The hostile cases, from `src` (the agent) to `dst:dport`, each with its
/// own random high source port:
///
/// * `ack-only`: an ACK with no handshake before it;
/// * `xmas`: FIN+PSH+URG;
/// * `null-flags`: no flags at all;
/// * `syn-fin`, `syn-rst`: contradictory flag pairs;
/// * `rst-only`: a lone RST;
/// * `syn-fragmented`: a SYN in two IPv4 fragments (the first holds the
///   first 8 bytes of the TCP header — ports and sequence — with MF set; the
///   second the rest, at offset 1);
/// * `lone-fragment`: a non-first fragment (offset 3, no MF) whose payload
///   looks like a TCP SYN to `dport`;
/// * `syn-ip-options`: a SYN with IHL 6 (one NOP,NOP,NOP,EOL option word);
/// * `syn-with-data`: a SYN carrying a PostgreSQL startup message (TCP fast
///   open style, with an empty fast-open cookie option).
pub fn hostile_cases(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<HostileCase> {
    const NAMES: [&str; 10] = [
        "ack-only",
        "xmas",
        "null-flags",
        "syn-fin",
        "syn-rst",
        "rst-only",
        "syn-fragmented",
        "lone-fragment",
        "syn-ip-options",
        "syn-with-data",
    ];
    let mut rng = Rng::new();
    let ports = distinct_ports(&mut rng, NAMES.len());
    let mut cases = Vec::with_capacity(NAMES.len());
    for (&name, &sport) in NAMES.iter().zip(&ports) {
        let seq = rng.u32();
        let id = rng.u16() | 1; // non-zero: the kernel keeps it as written
        let seg = |flags: u8, ack: u32, options: &[u8], payload: &[u8]| {
            tcp_segment(src, dst, sport, dport, seq, ack, flags, options, payload)
        };
        let whole = |segment: &[u8]| ipv4_packet(src, dst, id, false, 0, &[], segment);
        let (fragmented, packets) = match name {
            "ack-only" => (false, vec![whole(&seg(TcpFlags::ACK, rng.u32(), &[], &[]))]),
            "xmas" => (
                false,
                vec![whole(&seg(
                    TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG,
                    0,
                    &[],
                    &[],
                ))],
            ),
            "null-flags" => (false, vec![whole(&seg(0, 0, &[], &[]))]),
            "syn-fin" => (
                false,
                vec![whole(&seg(
                    TcpFlags::SYN | TcpFlags::FIN,
                    0,
                    &MSS_OPTION,
                    &[],
                ))],
            ),
            "syn-rst" => (
                false,
                vec![whole(&seg(
                    TcpFlags::SYN | TcpFlags::RST,
                    0,
                    &MSS_OPTION,
                    &[],
                ))],
            ),
            "rst-only" => (false, vec![whole(&seg(TcpFlags::RST, 0, &[], &[]))]),
            "syn-fragmented" => {
                let syn = seg(TcpFlags::SYN, 0, &MSS_OPTION, &[]);
                (
                    true,
                    vec![
                        ipv4_packet(src, dst, id, true, 0, &[], &syn[..8]),
                        ipv4_packet(src, dst, id, false, 1, &[], &syn[8..]),
                    ],
                )
            }
            "lone-fragment" => {
                let syn = seg(TcpFlags::SYN, 0, &MSS_OPTION, &[]);
                (true, vec![ipv4_packet(src, dst, id, false, 3, &[], &syn)])
            }
            "syn-ip-options" => {
                let syn = seg(TcpFlags::SYN, 0, &MSS_OPTION, &[]);
                // NOP, NOP, NOP, EOL: IHL 6.
                (
                    false,
                    vec![ipv4_packet(src, dst, id, false, 0, &[1, 1, 1, 0], &syn)],
                )
            }
            "syn-with-data" => {
                // MSS, fast-open cookie request (kind 34, empty), NOP, NOP.
                let opts = [2, 4, 0x05, 0xb4, 34, 2, 1, 1];
                (
                    false,
                    vec![whole(&seg(TcpFlags::SYN, 0, &opts, &pg_startup_message()))],
                )
            }
            other => unreachable!("unknown case {other}"),
        };
        cases.push(HostileCase {
            name,
            sport,
            fragmented,
            packets,
        });
    }
    cases
}

/// Send every packet of `cases` from the namespace at `ns_path` through a
/// layer-3 raw socket (`IP_HDRINCL`): the headers go out as built. Returns
/// the number of packets sent. A 2 ms pause between packets keeps bursts
/// well under any queue limit.
pub fn send_cases(ns_path: &str, cases: &[HostileCase]) -> io::Result<usize> {
    in_netns(ns_path, || {
        let (mut tx, _rx) = transport_channel(
            1 << 16,
            TransportChannelType::Layer3(IpNextHeaderProtocols::Tcp),
        )?;
        let mut sent = 0;
        for case in cases {
            for raw in &case.packets {
                let packet = Ipv4Packet::new(raw).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "short IPv4 packet")
                })?;
                let dst = IpAddr::V4(packet.get_destination());
                tx.send_to(packet, dst).map_err(|e| {
                    io::Error::new(e.kind(), format!("send {} to {dst}: {e}", case.name))
                })?;
                sent += 1;
                thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(sent)
    })
}

/// One IPv4 or IPv6 packet seen by a [`Capture`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 protocol / IPv6 next header (after the extension headers walked).
    pub protocol: IpNextHeaderProtocol,
    /// IPv4 MF set or a non-zero offset; IPv6 with a fragment header.
    pub is_fragment: bool,
    /// TCP source and destination ports, when the packet starts a TCP header
    /// (a first fragment with at least 4 bytes counts).
    pub tcp_sport: Option<u16>,
    pub tcp_dport: Option<u16>,
    /// TCP flags, when the header is long enough to hold them.
    pub tcp_flags: Option<u8>,
    /// Length of the IP packet as captured.
    pub len: usize,
}

impl fmt::Display for CapturedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} proto {}", self.src, self.dst, self.protocol)?;
        if let (Some(s), Some(d)) = (self.tcp_sport, self.tcp_dport) {
            write!(f, " tcp {s} -> {d}")?;
        }
        if let Some(flags) = self.tcp_flags {
            write!(f, " flags {flags:#04x}")?;
        }
        if self.is_fragment {
            write!(f, " FRAGMENT")?;
        }
        write!(f, " len {}", self.len)
    }
}

/// TCP ports and flags from the start of a TCP header, as far as present.
fn tcp_fields(bytes: &[u8]) -> (Option<u16>, Option<u16>, Option<u8>) {
    if bytes.len() < 4 {
        return (None, None, None);
    }
    let sport = u16::from_be_bytes([bytes[0], bytes[1]]);
    let dport = u16::from_be_bytes([bytes[2], bytes[3]]);
    (Some(sport), Some(dport), bytes.get(13).copied())
}

/// Parse one Ethernet frame; non-IP frames give `None`.
pub fn parse_frame(frame: &[u8]) -> Option<CapturedPacket> {
    let eth = EthernetPacket::new(frame)?;
    match eth.get_ethertype() {
        EtherTypes::Ipv4 => {
            let ip = Ipv4Packet::new(eth.payload())?;
            let offset = ip.get_fragment_offset();
            let is_fragment = ip.get_flags() & Ipv4Flags::MoreFragments != 0 || offset != 0;
            let protocol = ip.get_next_level_protocol();
            let (tcp_sport, tcp_dport, tcp_flags) =
                if protocol == IpNextHeaderProtocols::Tcp && offset == 0 {
                    tcp_fields(ip.payload())
                } else {
                    (None, None, None)
                };
            Some(CapturedPacket {
                src: IpAddr::V4(ip.get_source()),
                dst: IpAddr::V4(ip.get_destination()),
                protocol,
                is_fragment,
                tcp_sport,
                tcp_dport,
                tcp_flags,
                len: eth.payload().len(),
            })
        }
        EtherTypes::Ipv6 => {
            let ip = Ipv6Packet::new(eth.payload())?;
            let mut next = ip.get_next_header();
            let mut rest = ip.payload();
            let mut is_fragment = false;
            // Walk at most six extension headers.
            for _ in 0..6 {
                match next.0 {
                    // hop-by-hop, routing, destination options
                    0 | 43 | 60 if rest.len() >= 2 => {
                        let len = (usize::from(rest[1]) + 1) * 8;
                        next = IpNextHeaderProtocol(rest[0]);
                        rest = rest.get(len..).unwrap_or(&[]);
                    }
                    44 => {
                        is_fragment = true;
                        break;
                    }
                    _ => break,
                }
            }
            let (tcp_sport, tcp_dport, tcp_flags) =
                if next == IpNextHeaderProtocols::Tcp && !is_fragment {
                    tcp_fields(rest)
                } else {
                    (None, None, None)
                };
            Some(CapturedPacket {
                src: IpAddr::V6(ip.get_source()),
                dst: IpAddr::V6(ip.get_destination()),
                protocol: next,
                is_fragment,
                tcp_sport,
                tcp_dport,
                tcp_flags,
                len: eth.payload().len(),
            })
        }
        _ => None,
    }
}

/// At most this many packets are kept per capture (the loop is bounded in
/// time as well).
const MAX_CAPTURED: usize = 100_000;

/// A capture running on its own thread; [`Capture::finish`] collects it.
pub struct Capture {
    worker: thread::JoinHandle<io::Result<Vec<CapturedPacket>>>,
}

impl Capture {
    /// Open an `AF_PACKET` channel on `iface` inside the namespace at
    /// `ns_path` and record IP packets for `duration` (from the moment the
    /// channel is open). Returns once the socket is bound to the interface:
    /// from then on every frame is queued for the capture, so packets sent
    /// after `start` returns are seen.
    pub fn start(ns_path: &str, iface: &str, duration: Duration) -> io::Result<Capture> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let ns_path = ns_path.to_owned();
        let iface = iface.to_owned();
        let worker = thread::spawn(move || {
            in_netns(&ns_path, || capture_here(&iface, duration, Some(ready_tx)))
        });
        // Bounded wait for the channel to open (or fail).
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => {
                // Belt and braces: the bound socket already queues frames,
                // but give the thread time to be in its read loop.
                thread::sleep(Duration::from_millis(300));
                Ok(Capture { worker })
            }
            // The worker dropped the sender without signalling: it failed.
            Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => Err(io::Error::other("capture ended before it was ready")),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "capture channel did not open within 10 s",
            )),
        }
    }

    /// Wait for the capture's duration to end and return what it saw.
    pub fn finish(self) -> io::Result<Vec<CapturedPacket>> {
        match self.worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Capture every IPv4/IPv6 packet on `iface` in the namespace at `ns_path`
/// for `duration`. Blocking; use [`Capture::start`] to capture while sending.
pub fn capture(ns_path: &str, iface: &str, duration: Duration) -> Vec<CapturedPacket> {
    in_netns(ns_path, || capture_here(iface, duration, None))
        .unwrap_or_else(|e| panic!("capture on {iface} in {ns_path}: {e}"))
}

/// The capture loop, in the calling thread's namespace.
fn capture_here(
    iface: &str,
    duration: Duration,
    ready: Option<mpsc::Sender<()>>,
) -> io::Result<Vec<CapturedPacket>> {
    let interface = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {iface}")))?;
    let config = datalink::Config {
        read_timeout: Some(Duration::from_millis(100)),
        read_buffer_size: 1 << 16,
        ..Default::default()
    };
    let mut rx = match datalink::channel(&interface, config)? {
        Channel::Ethernet(_tx, rx) => rx,
        _ => return Err(io::Error::other("unexpected datalink channel type")),
    };
    let deadline = Instant::now() + duration;
    if let Some(ready) = ready {
        let _ = ready.send(());
    }
    let mut seen = Vec::new();
    while Instant::now() < deadline && seen.len() < MAX_CAPTURED {
        match rx.next() {
            Ok(frame) => seen.extend(parse_frame(frame)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_well_formed() {
        let src = Ipv4Addr::new(10, 0, 0, 2);
        let dst = Ipv4Addr::new(10, 0, 1, 2);
        let cases = hostile_cases(src, dst, 5432);
        assert_eq!(cases.len(), 10);
        for case in &cases {
            assert!(!case.packets.is_empty(), "{}", case.name);
            for raw in &case.packets {
                let ip = Ipv4Packet::new(raw).unwrap();
                assert_eq!(ip.get_total_length() as usize, raw.len(), "{}", case.name);
                assert_eq!(ip.get_checksum(), ipv4::checksum(&ip), "{}", case.name);
                assert_eq!(ip.get_source(), src);
                assert_eq!(ip.get_destination(), dst);
                let frag =
                    ip.get_flags() & Ipv4Flags::MoreFragments != 0 || ip.get_fragment_offset() != 0;
                assert_eq!(frag, case.fragmented, "{}", case.name);
                if !frag {
                    let t = tcp::TcpPacket::new(ip.payload()).unwrap();
                    assert_eq!(t.get_destination(), 5432);
                    assert_eq!(t.get_source(), case.sport);
                    assert_eq!(
                        t.get_checksum(),
                        tcp::ipv4_checksum(&t, &src, &dst),
                        "{}",
                        case.name
                    );
                }
            }
        }
        // The fragmented SYN reassembles into a valid SYN.
        let f = cases.iter().find(|c| c.name == "syn-fragmented").unwrap();
        let a = Ipv4Packet::new(&f.packets[0]).unwrap();
        let b = Ipv4Packet::new(&f.packets[1]).unwrap();
        assert_eq!(a.payload().len(), 8);
        assert_eq!(b.get_fragment_offset(), 1);
        let whole = [a.payload(), b.payload()].concat();
        let t = tcp::TcpPacket::new(&whole).unwrap();
        assert_eq!(t.get_flags(), TcpFlags::SYN);
        assert_eq!(t.get_checksum(), tcp::ipv4_checksum(&t, &src, &dst));
        // IP options: IHL 6.
        let o = cases.iter().find(|c| c.name == "syn-ip-options").unwrap();
        assert_eq!(
            Ipv4Packet::new(&o.packets[0]).unwrap().get_header_length(),
            6
        );
        // Distinct source ports.
        let mut ports: Vec<u16> = cases.iter().map(|c| c.sport).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), cases.len());
    }

    #[test]
    fn parses_first_fragments_but_not_later_ones() {
        let src = Ipv4Addr::new(10, 0, 0, 2);
        let dst = Ipv4Addr::new(10, 0, 1, 2);
        let cases = hostile_cases(src, dst, 5432);
        let frame = |ip: &[u8]| {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(ip);
            f
        };
        let f = cases.iter().find(|c| c.name == "syn-fragmented").unwrap();
        let first = parse_frame(&frame(&f.packets[0])).unwrap();
        assert!(first.is_fragment);
        assert_eq!(first.tcp_dport, Some(5432));
        let second = parse_frame(&frame(&f.packets[1])).unwrap();
        assert!(second.is_fragment);
        assert_eq!(second.tcp_dport, None);
        let x = cases.iter().find(|c| c.name == "xmas").unwrap();
        let p = parse_frame(&frame(&x.packets[0])).unwrap();
        assert!(!p.is_fragment);
        assert_eq!(
            p.tcp_flags,
            Some(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG)
        );
    }
}
