//! One host's link: its place on the network ([`HostLink`]), the iptables chains the
//! faults use, and the qdiscs that shape it (see [`super::faults`] for how they are used).

use std::net::Ipv4Addr;
use std::time::Duration;

use super::address::LinkRate;
use super::cmd::{self, NetworkError};
use super::netns::Netns;

/// Each host's end of its veth pair.
pub(super) const HOST_IF: &str = "eth0";

/// tbf's queue: how long a packet may wait for the bucket before it is dropped. 100 ms
/// holds a burst of a few hundred orders' worth of packets at 10mbit, as a switch port's
/// buffer would; a longer queue only adds delay (bufferbloat).
const TBF_LATENCY: &str = "100ms";

/// One host's place on the network: its namespace and its address.
#[derive(Debug, Clone)]
pub struct HostLink {
    pub host: String,
    pub netns: Netns,
    pub address: Ipv4Addr,
}

/// The hub's end of `host`'s veth pair: `v-api0` (interface names have 15 bytes at most;
/// host names are short).
pub(super) fn hub_side(host: &str) -> String {
    let mut name = format!("v-{host}");
    name.truncate(15);
    name
}

/// The chains, in a fresh namespace (one `iptables-restore`, which also proves iptables
/// works there before the run starts).
pub(super) fn install_chains(ns: &str) -> Result<(), NetworkError> {
    let rules = "*filter\n\
                 :INPUT ACCEPT [0:0]\n\
                 :FORWARD ACCEPT [0:0]\n\
                 :OUTPUT ACCEPT [0:0]\n\
                 :lab-cut - [0:0]\n\
                 :lab-loss - [0:0]\n\
                 -A INPUT -j lab-cut\n\
                 -A INPUT -j lab-loss\n\
                 COMMIT\n";
    cmd::in_ns_with_input(ns, cmd::IPTABLES_RESTORE, &["-w"], Some(rules)).map(drop)
}

/// Shapes `link` to `rate` (and `delay`, with netem) on both ends; `None` for both takes
/// any shaping off.
pub(super) fn shape(
    hub: &str,
    link: &HostLink,
    rate: Option<LinkRate>,
    delay: Option<Duration>,
) -> Result<(), NetworkError> {
    let ns = link.netns.name();
    let peer = hub_side(&link.host);
    let host_end = qdisc(rate, delay);
    let hub_end = qdisc(rate, None);
    for (ns, dev, qdisc) in [(ns, HOST_IF, host_end), (hub, peer.as_str(), hub_end)] {
        match qdisc {
            Some(qdisc) => {
                let mut args = vec!["-n", ns, "qdisc", "replace", "dev", dev, "root"];
                args.extend(qdisc.iter().map(String::as_str));
                cmd::run(cmd::TC, &args)?;
            }
            // No qdisc to delete is not an error here: the link is unshaped either way.
            None => {
                let _ = cmd::run(cmd::TC, &["-n", ns, "qdisc", "del", "dev", dev, "root"]);
            }
        }
    }
    Ok(())
}

/// The qdisc for one end: netem when there is a delay (its own `rate` too), else tbf.
fn qdisc(rate: Option<LinkRate>, delay: Option<Duration>) -> Option<Vec<String>> {
    match (rate, delay) {
        (rate, Some(delay)) => {
            let mut q = vec![
                "netem".into(),
                "delay".into(),
                format!("{}us", delay.as_micros()),
            ];
            if let Some(rate) = rate {
                q.extend(["rate".into(), rate.to_string()]);
            }
            Some(q)
        }
        (Some(rate), None) => Some(vec![
            "tbf".into(),
            "rate".into(),
            rate.to_string(),
            "burst".into(),
            rate.burst_bytes().to_string(),
            "latency".into(),
            TBF_LATENCY.into(),
        ]),
        (None, None) => None,
    }
}
