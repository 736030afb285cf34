//! A small synchronous rtnetlink client (`man 7 rtnetlink`, `man 7 netlink`): just the
//! requests `final` needs (links, addresses, a default route), one request at a time, each
//! answered by an acknowledgement or an error.
//!
//! Why these crates: `netlink-packet-route` (the rust-netlink project, also under the
//! `rtnetlink` crate and many network tools) builds and parses the messages, `netlink-sys`
//! is the socket. The `rtnetlink` crate on top of them is async and needs tokio; `final` is a
//! single-threaded runtime that forks and clones, and pulling an executor into it would cost
//! build time, binary size and start-up work for nothing. Only `--network bridge` opens a
//! netlink socket at all: the default path (`--network none`) never touches this module.

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr};

/// A route netlink socket in the network namespace of the thread that opened it.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).context("socket(AF_NETLINK, NETLINK_ROUTE) failed")?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .context("bind of the netlink socket failed")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("connect of the netlink socket to the kernel failed")?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement (`NLM_F_ACK`), or collects the
    /// answers of a dump.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        // Always ask for an acknowledgement: a plain get is otherwise answered by one message
        // and nothing marks the end. (Dumps end with NLMSG_DONE; a stray acknowledgement
        // after it carries an old sequence number and is skipped by the next request.)
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .context("send on the netlink socket failed")?;
        let mut answers = Vec::new();
        loop {
            let (data, _) = self
                .socket
                .recv_from_full()
                .context("recv on the netlink socket failed")?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| anyhow!("cannot parse a netlink reply: {e}"))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(answers), // the acknowledgement
                                Some(code) => {
                                    Err(std::io::Error::from_raw_os_error(-code.get()).into())
                                }
                            };
                        }
                        NetlinkPayload::Done(_) => return Ok(answers),
                        NetlinkPayload::InnerMessage(m) => answers.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    /// The index of interface `name`, or None if there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e.context(format!("RTM_GETLINK {name} failed"))),
        }
    }

    /// `ip link add NAME type bridge`.
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("cannot create the bridge {name} (RTM_NEWLINK type bridge)"))?;
        Ok(())
    }

    // ANCHOR: add_veth
    /// `ip link add HOST master BRIDGE up type veth peer name PEER netns PID` (`man 4 veth`):
    /// the peer is created directly in the network namespace of process `pid`, so no
    /// interface named `PEER` ever exists on the host (where `eth0` usually does).
    pub fn add_veth(&mut self, host: &str, master: u32, peer: &str, pid: i32) -> Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.into()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsPid(pid as u32));
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(host.into()));
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| {
            format!("cannot create the veth pair {host} (host) / {peer} (container, pid {pid})")
        })?;
        Ok(())
    }
    // ANCHOR_END: add_veth

    /// `ip link del NAME`; Ok(false) if it did not exist.
    pub fn del_link(&mut self, name: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK) {
            Ok(_) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e.context(format!("cannot delete the interface {name}"))),
        }
    }

    /// `ip link set dev INDEX up`.
    pub fn set_up(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .with_context(|| format!("cannot bring {name} up"))?;
        Ok(())
    }

    /// The IPv4 addresses (with prefix lengths) of interface `index`.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let answers = self
            .request(
                RouteNetlinkMessage::GetAddress(msg),
                netlink_packet_core::NLM_F_DUMP,
            )
            .context("RTM_GETADDR failed")?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, a.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// `ip addr add IP/PREFIX dev INDEX` (with the broadcast address, as `ip` sets it).
    pub fn add_address(&mut self, index: u32, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        let host_mask = u32::MAX.checked_shr(prefix as u32).unwrap_or(0);
        let broadcast = Ipv4Addr::from(u32::from(ip) | host_mask);
        msg.attributes.push(AddressAttribute::Local(ip.into()));
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("cannot add the address {ip}/{prefix} to {name}"))?;
        Ok(())
    }

    /// `ip route add default via GATEWAY`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("cannot add the default route via {gateway}"))?;
        Ok(())
    }
}

/// The errno of a failed request, if that is what failed.
pub fn errno(err: &anyhow::Error) -> Option<i32> {
    err.downcast_ref::<std::io::Error>()
        .and_then(|e| e.raw_os_error())
}

/// Refuses names the kernel would (IFNAMSIZ is 16 including the NUL, `man 7 netdevice`).
pub fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        bail!("invalid interface name {name:?}");
    }
    Ok(())
}
