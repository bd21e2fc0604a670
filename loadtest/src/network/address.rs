//! The lab network's addresses ([`Cidr`], `--network-cidr`) and link rates ([`LinkRate`],
//! `--link-rate` and the `rate:` fault).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 range for the lab network, e.g. `10.200.0.0/24`. Host `i` of the topology gets
/// the range's address `i + 2` (`.0` is the network itself and `.1` is left free, by the
/// usual convention for a gateway; the lab has none: its network reaches nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    /// The default: a private range (RFC 1918). It lives only inside the lab's own
    /// namespaces, so it cannot clash with the machine's networks; `--network-cidr`
    /// chooses another anyway, for a reader who wants addresses they recognise.
    pub const DEFAULT: &str = "10.200.0.0/24";

    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// How many hosts the range holds (without `.0`, `.1` and the broadcast address).
    pub fn capacity(self) -> u64 {
        (1u64 << (32 - u32::from(self.prefix))).saturating_sub(3)
    }

    /// The address of the `index`-th host, if the range holds that many.
    pub fn host(self, index: usize) -> Option<Ipv4Addr> {
        let index = u64::try_from(index).ok()?;
        (index < self.capacity()).then(|| {
            let base = u64::from(u32::from(self.network));
            Ipv4Addr::from((base + 2 + index) as u32)
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad = || {
            format!(
                "'{text}' is not an IPv4 range; write it as ADDRESS/PREFIX, e.g. {}",
                Cidr::DEFAULT
            )
        };
        let (address, prefix) = text.trim().split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=29).contains(&prefix) {
            return Err(format!(
                "'{text}': the prefix must be from /8 to /29 (a /29 holds 5 hosts)"
            ));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        if u32::from(address) & !mask != 0 {
            return Err(format!(
                "'{text}' has host bits set; the range starts at {}/{prefix}",
                Ipv4Addr::from(u32::from(address) & mask)
            ));
        }
        Ok(Cidr {
            network: address,
            prefix,
        })
    }
}

/// A link's rate in bits per second, as `tc` writes it: `100mbit`, `10mbit`, `512kbit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRate {
    bits_per_s: u64,
}

/// The slowest rate accepted: below it, TCP's own timers (the 200 ms minimum
/// retransmission timeout) dominate what the link does, and a 1500-byte packet takes
/// longer than tbf's queue allows.
const MIN_BITS_PER_S: u64 = 64_000;

impl LinkRate {
    pub fn bits_per_s(self) -> u64 {
        self.bits_per_s
    }

    /// tbf's bucket: 10 ms worth of the rate, and at least a few full packets (tbf needs
    /// one packet's worth to send anything; a bucket much larger would let bursts through
    /// at the veth's own speed).
    pub fn burst_bytes(self) -> u64 {
        (self.bits_per_s / 8 / 100).max(4 * 1514)
    }
}

impl fmt::Display for LinkRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bits_per_s;
        match () {
            _ if b.is_multiple_of(1_000_000_000) => write!(f, "{}gbit", b / 1_000_000_000),
            _ if b.is_multiple_of(1_000_000) => write!(f, "{}mbit", b / 1_000_000),
            _ if b.is_multiple_of(1_000) => write!(f, "{}kbit", b / 1_000),
            _ => write!(f, "{b}bit"),
        }
    }
}

impl FromStr for LinkRate {
    type Err = String;

    fn from_str(text: &str) -> Result<LinkRate, String> {
        let lower = text.trim().to_ascii_lowercase();
        let units = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)];
        let parsed = units.iter().find_map(|(unit, scale)| {
            let number: f64 = lower.strip_suffix(unit)?.trim().parse().ok()?;
            Some(number * scale)
        });
        let bits = parsed.filter(|b| b.is_finite()).ok_or_else(|| {
            format!("'{text}' is not a link rate; write e.g. 100mbit, 10mbit or 512kbit")
        })?;
        if bits < MIN_BITS_PER_S as f64 {
            return Err(format!(
                "'{text}' is too thin a link; at least {}",
                LinkRate {
                    bits_per_s: MIN_BITS_PER_S
                }
            ));
        }
        Ok(LinkRate {
            bits_per_s: bits as u64,
        })
    }
}
