//! `loadtest run --network`: the lab network built before the async runtime starts, the
//! lab moved into the `client` host's namespace (so every thread the runtime starts, and
//! with them the generator's connections, lives there), and both undone after the run —
//! after the runtime is gone, also on an error or Ctrl-C.

use std::sync::Arc;

use anyhow::Context as _;

use crate::lab::LabOptions;
use crate::network::{Netns, Network, check_prerequisites, netem_available};
use crate::topology::Role;

/// The lab's side of the network: dropped, it moves this thread back home and removes
/// every namespace.
pub(super) struct ClientSide {
    network: Arc<Network>,
    home: Netns,
}

/// Builds the network `options.network` asks for, if any, and enters the client's
/// namespace on this thread (call it before the runtime is built).
pub(super) fn build(options: &mut LabOptions) -> anyhow::Result<Option<ClientSide>> {
    let names: Vec<String> = (options.topology().hosts.into_iter())
        .map(|h| h.name)
        .collect();
    let Some(asked) = &mut options.network else {
        return Ok(None);
    };
    check_prerequisites()?;
    if asked.options.link_delay.is_some() && !netem_available()? {
        anyhow::bail!(
            "--link-delay needs the kernel's netem qdisc, which this kernel does not have (tc: \"Specified qdisc kind is unknown\"); drop --link-delay — --link-rate and the network faults work without it"
        );
    }
    let network = Arc::new(Network::create(&names, asked.options)?);
    let client = (network.host(&Role::Client.host(0)))
        .context("the lab network has no client host (a bug in loadtest)")?
        .clone();
    let home = Netns::current().context("cannot open this thread's network namespace")?;
    client.netns.enter_this_thread().with_context(|| {
        format!(
            "cannot enter the client's namespace {}",
            client.netns.name()
        )
    })?;
    let hosts: Vec<String> = (network.hosts().iter())
        .map(|h| format!("{} {}", h.host, h.address))
        .collect();
    eprintln!(
        "loadtest: lab network {} ({}): {}",
        asked.options.cidr,
        describe_link(asked.options),
        hosts.join(", ")
    );
    asked.built = Some(network.clone());
    Ok(Some(ClientSide { network, home }))
}

fn describe_link(options: crate::network::NetworkOptions) -> String {
    let rate = options
        .link_rate
        .map_or("links unlimited".to_string(), |r| format!("links {r}"));
    match options.link_delay {
        Some(d) => format!("{rate}, {} ms delay", d.as_secs_f64() * 1e3),
        None => rate,
    }
}

impl Drop for ClientSide {
    fn drop(&mut self) {
        if let Err(e) = self.home.enter_this_thread() {
            eprintln!("loadtest: warning: cannot leave the client's namespace: {e}");
        }
        let removed = self.network.remove();
        eprintln!("loadtest: lab network removed ({removed} namespaces)");
    }
}
