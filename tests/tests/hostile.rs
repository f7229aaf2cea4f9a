//! Hostile packets in gateway mode: hand-crafted TCP with odd flags,
//! fragments, IP options and data on SYN, sent from the agent host to the
//! protected database port. None of them may reach the database host
//! un-proxied. The same packets to an unprotected port, and to a second,
//! unprotected address on the database host, are the controls that prove the
//! capture on the database host's link sees what gets through.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

use sluice_lab::{
    packets::{Capture, CapturedPacket, HostileCase, hostile_cases, in_netns, send_cases},
    require_privileged, scenario,
};

/// The lab's tag: namespaces `sl-g5-*`, addresses 10.77.10.0/24 and
/// 10.77.11.0/24 (index 5), apart from gateway.rs's labs.
const TAG: &str = "g5";

fn list(packets: &[&CapturedPacket]) -> String {
    packets
        .iter()
        .map(|p| format!("  {p}\n"))
        .collect::<String>()
}

/// Which case (by its distinct source port) a captured packet belongs to.
fn case_of<'a>(cases: &'a [HostileCase], p: &CapturedPacket) -> Option<&'a HostileCase> {
    cases.iter().find(|c| Some(c.sport) == p.tcp_sport)
}

#[test]
fn hostile_packets_never_reach_the_database_unproxied() {
    if !require_privileged("hostile_packets_never_reach_the_database_unproxied") {
        return;
    }
    let s = scenario::start(TAG, 5, "");
    let agent: Ipv4Addr = s.lab.agent_ip.parse().unwrap();
    let db: Ipv4Addr = s.lab.db_ip.parse().unwrap();
    let agent_ip = IpAddr::V4(agent);
    // The database host's end of its veth (see `GatewayLab::up`).
    let db_if = format!("sl{TAG}d");

    // Warm the neighbour caches on every hop (agent → gateway → database and
    // back) with one ordinary, unprotected connection attempt, so no crafted
    // packet waits in an ARP queue. Refused is the expected answer.
    let warm = SocketAddr::new(IpAddr::V4(db), 8080);
    let _ = in_netns(&s.lab.agent.path(), || {
        TcpStream::connect_timeout(&warm, Duration::from_secs(2))
    });

    // A second, unprotected address on the database host: the control for
    // the fragment cases, which the classifier drops for the protected
    // address whatever the port (a later fragment carries no port).
    let o = db.octets();
    let other = Ipv4Addr::new(o[0], o[1], o[2], o[3] + 1);
    s.lab
        .db
        .run(&["ip", "addr", "add", &format!("{other}/24"), "dev", &db_if]);

    let protected = hostile_cases(agent, db, 5432);
    // Same address, unprotected port.
    let control_port = hostile_cases(agent, db, 8080);
    // Unprotected address, the protected port number.
    let control_addr = hostile_cases(agent, other, 5432);

    let capture = Capture::start(&s.lab.db.path(), &db_if, Duration::from_secs(3))
        .expect("start capture on the database host's link");
    let agent_ns = s.lab.agent.path();
    let sent_hostile = send_cases(&agent_ns, &protected).expect("send hostile cases");
    let sent_port = send_cases(&agent_ns, &control_port).expect("send control cases (port)");
    let sent_addr = send_cases(&agent_ns, &control_addr).expect("send control cases (address)");
    let seen = capture.finish().expect("capture");

    let from_agent: Vec<&CapturedPacket> = seen.iter().filter(|p| p.src == agent_ip).collect();
    let to = |dst: Ipv4Addr| {
        from_agent
            .iter()
            .copied()
            .filter(move |p| p.dst == IpAddr::V4(dst))
    };
    let hostile_seen: Vec<&CapturedPacket> = to(db).filter(|p| p.tcp_dport == Some(5432)).collect();
    let fragments_seen: Vec<&CapturedPacket> = to(db).filter(|p| p.is_fragment).collect();
    let port_seen: Vec<&CapturedPacket> = to(db)
        .filter(|p| p.tcp_dport == Some(8080) && case_of(&control_port, p).is_some())
        .collect();
    let addr_seen: Vec<&CapturedPacket> = to(other).collect();
    eprintln!(
        "sent {sent_hostile} hostile packets to {db}:5432, {sent_port} control packets to {db}:8080 \
         and {sent_addr} to {other}:5432; the database host saw from the agent: {} to {db}:5432, \
         {} fragments to {db}, {} to {db}:8080, {} to {other} ({} of them fragments); \
         {} packets captured in all",
        hostile_seen.len(),
        fragments_seen.len(),
        port_seen.len(),
        addr_seen.len(),
        addr_seen.iter().filter(|p| p.is_fragment).count(),
        seen.len()
    );

    // (1) Nothing from the agent to the protected port, and no fragments to
    // the protected address.
    assert!(
        hostile_seen.is_empty() && fragments_seen.is_empty(),
        "hostile packets reached the database host un-proxied:\n{}cases (name, source port): {:?}\nsluice log:\n{}",
        list(
            &to(db)
                .filter(|p| p.tcp_dport == Some(5432) || p.is_fragment)
                .collect::<Vec<_>>()
        ),
        protected
            .iter()
            .map(|c| (c.name, c.sport))
            .collect::<Vec<_>>(),
        s.daemon.log_text()
    );

    // (2) The controls, which prove the capture would see a leak: every
    // non-fragment case to the unprotected port, and every case (fragments
    // included) to the unprotected address, was forwarded to the database
    // host. (The fragments to the unprotected port of the protected address
    // are dropped: a later fragment carries no port to tell them apart.)
    let missing_port: Vec<&str> = control_port
        .iter()
        .filter(|c| !c.fragmented)
        .filter(|c| !port_seen.iter().any(|p| p.tcp_sport == Some(c.sport)))
        .map(|c| c.name)
        .collect();
    // PostgreSQL listens on every address, so the agent's kernel answers its
    // SYN-ACKs with resets: more packets than were sent, with the same ports.
    // Fragments are counted exactly.
    let fragments_to_other: usize = control_addr
        .iter()
        .filter(|c| c.fragmented)
        .map(|c| c.packets.len())
        .sum();
    let fragments_seen_other = addr_seen.iter().filter(|p| p.is_fragment).count();
    let missing_addr: Vec<&str> = control_addr
        .iter()
        .filter(|c| !c.fragmented)
        .filter(|c| !addr_seen.iter().any(|p| p.tcp_sport == Some(c.sport)))
        .map(|c| c.name)
        .collect();
    assert!(
        missing_port.is_empty()
            && missing_addr.is_empty()
            && fragments_seen_other == fragments_to_other,
        "control packets not seen at the database host: to port 8080 {missing_port:?}, \
         to {other} {missing_addr:?} ({fragments_seen_other} of {fragments_to_other} fragments)\n\
         from the agent:\n{}",
        list(&from_agent)
    );

    // (3) The proxy goes on: an ordinary psql still works, through sluice.
    let (ok, out, err) = s.agent_psql(&s.lab.db_ip, "select inet_client_addr()");
    assert!(
        ok,
        "psql through sluice failed after the hostile packets: {err}\n{}",
        s.daemon.log_text()
    );
    assert_eq!(out, s.lab.gw_db_ip, "database saw {out} as the client");

    // (4) The database never heard from the agent directly.
    assert_eq!(
        s.direct_connections_from(&s.lab.agent_ip),
        0,
        "a connection reached the database un-proxied:\n{}",
        s.pg.log_text()
    );
}
