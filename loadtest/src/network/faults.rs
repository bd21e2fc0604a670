//! Network faults: partitions, loss and thin links, and healing them — Jepsen's way, with
//! iptables inside the hosts' own namespaces.
//!
//! Each host namespace has two chains of the lab's, jumped to from `INPUT`:
//! - `lab-cut`: a partition. On each side, `DROP` what arrives from the other side's
//!   addresses. Both directions are cut (each side drops the other's packets), a SYN goes
//!   unanswered and an open connection goes quiet: no RST, unlike `REJECT`, because a cut
//!   cable sends none.
//! - `lab-loss`: loss. `loss:HOST:P` drops a share P of what arrives on HOST's link, and
//!   every other host drops the same share of what arrives *from* HOST: both directions of
//!   HOST's link are lossy, and every drop happens on arrival, as on a wire (a DROP in
//!   `OUTPUT` would instead fail the sender's own send call, which a lossy wire never
//!   does). Two lossy hosts compose as two lossy links in a row.
//!
//! A thin link is a `tbf` qdisc on both ends of the host's veth pair (the host's `eth0`
//! and the hub's `v-HOST`): both directions limited to the rate.

use std::collections::BTreeMap;

use super::address::LinkRate;
use super::cmd::{self, NetworkError};
use super::lab_net::{FaultState, Network};
use super::link::{HOST_IF, HostLink, shape};

impl Network {
    fn link(&self, host: &str) -> Result<&HostLink, NetworkError> {
        self.host(host)
            .ok_or_else(|| NetworkError::Usage(format!("the lab network has no host '{host}'")))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts every host of `a` from every host of `b`, both ways. Returns what was done.
    pub fn partition(&self, a: &[String], b: &[String]) -> Result<String, NetworkError> {
        for (side, other) in [(a, b), (b, a)] {
            let sources: Vec<String> = (other.iter())
                .map(|h| self.link(h).map(|l| l.address.to_string()))
                .collect::<Result<_, _>>()?;
            let sources = sources.join(",");
            for host in side {
                let ns = self.link(host)?.netns.name().to_string();
                let args = ["-w", "-A", "lab-cut", "-s", &sources, "-j", "DROP"];
                cmd::in_ns(&ns, cmd::IPTABLES, &args)?;
            }
        }
        self.state().cut = true;
        Ok(format!(
            "every packet between {} and {} dropped on arrival, both ways (no RST: connections go quiet)",
            self.describe(a),
            self.describe(b)
        ))
    }

    /// Cuts `host` from every other host.
    pub fn isolate(&self, host: &str) -> Result<String, NetworkError> {
        let others: Vec<String> = (self.hosts.iter())
            .filter(|h| h.host != host)
            .map(|h| h.host.clone())
            .collect();
        self.partition(&[host.to_string()], &others)
    }

    /// Makes `host`'s link drop a share `p` (0 to 1) of its packets, both ways; 0 heals it.
    pub fn loss(&self, host: &str, p: f64) -> Result<String, NetworkError> {
        self.link(host)?;
        let mut state = self.state();
        if p > 0.0 {
            state.loss.insert(host.to_string(), p);
        } else {
            state.loss.remove(host);
        }
        self.write_loss_rules(&state.loss)?;
        Ok(format!(
            "{:.1} % of the packets on {}'s link dropped, both ways",
            p * 100.0,
            self.describe(&[host.to_string()])
        ))
    }

    /// Rewrites every host's `lab-loss` chain for `loss` (one `iptables-restore` each).
    fn write_loss_rules(&self, loss: &BTreeMap<String, f64>) -> Result<(), NetworkError> {
        for link in &self.hosts {
            let mut rules = String::from("*filter\n-F lab-loss\n");
            for (lossy, p) in loss {
                let matching = if *lossy == link.host {
                    format!("-i {HOST_IF}")
                } else {
                    format!("-s {}", self.link(lossy)?.address)
                };
                rules.push_str(&format!(
                    "-A lab-loss {matching} -m statistic --mode random --probability {p:.6} -j DROP\n"
                ));
            }
            rules.push_str("COMMIT\n");
            let args = ["-w", "--noflush"];
            cmd::in_ns_with_input(
                link.netns.name(),
                cmd::IPTABLES_RESTORE,
                &args,
                Some(&rules),
            )?;
        }
        Ok(())
    }

    /// Limits `host`'s link to `rate`, both ways (until [`Network::heal`]).
    pub fn rate(&self, host: &str, rate: LinkRate) -> Result<String, NetworkError> {
        let link = self.link(host)?;
        shape(&self.hub, link, Some(rate), self.options.link_delay)?;
        let mut state = self.state();
        if !state.rated.iter().any(|h| h == host) {
            state.rated.push(host.to_string());
        }
        Ok(format!("{host}'s link limited to {rate}, both ways"))
    }

    /// Undoes every network fault: partitions and loss removed, changed rates set back to
    /// `--link-rate` (or unlimited). Returns what was healed.
    pub fn heal(&self) -> Result<String, NetworkError> {
        let mut state = self.state();
        let mut healed = Vec::new();
        if state.cut {
            for link in &self.hosts {
                cmd::in_ns(link.netns.name(), cmd::IPTABLES, &["-w", "-F", "lab-cut"])?;
            }
            healed.push("partitions".to_string());
        }
        if !state.loss.is_empty() {
            self.write_loss_rules(&BTreeMap::new())?;
            healed.push("loss".to_string());
        }
        for host in &state.rated {
            let (rate, delay) = (self.options.link_rate, self.options.link_delay);
            shape(&self.hub, self.link(host)?, rate, delay)?;
            healed.push(format!("{host}'s rate"));
        }
        *state = FaultState::default();
        Ok(if healed.is_empty() {
            "no network fault was in place".to_string()
        } else {
            format!("healed: {}", healed.join(", "))
        })
    }

    /// Whether some network fault is in place now.
    pub fn is_faulty(&self) -> bool {
        let state = self.state();
        state.cut || !state.loss.is_empty() || !state.rated.is_empty()
    }

    /// `api0 (10.200.0.2)`, or `broker0, broker1 (2 hosts)`.
    fn describe(&self, hosts: &[String]) -> String {
        match hosts {
            [one] => match self.host(one) {
                Some(link) => format!("{one} ({})", link.address),
                None => one.clone(),
            },
            many => format!("{} ({} hosts)", many.join(", "), many.len()),
        }
    }
}
