//! What to confine a process to ([`Limits`]), and memory sizes read and written in binary units.

use std::fmt;

use super::error::ConfineError;

/// Byte counts in binary units, one decimal ("2.0 GiB"): the report's formatter, so that
/// the confinement's messages and the summary say the same.
pub use lab_report::format::format_bytes;

/// What to confine a process to. `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// CPU quota in CPUs (1.0 = one full CPU; 0.5 = half of one; 2.0 = two).
    pub cpus: Option<f64>,
    /// Memory limit in bytes (no swap on top of it where the kernel lets us say so).
    pub memory_bytes: Option<u64>,
}

/// The smallest memory limit accepted: below it not even a small program starts (the
/// purchasing API alone is about 10 MiB resident before its first order), and a child
/// killed as it starts reads as a crash of the system under test rather than a typo.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

impl Limits {
    pub fn is_unconfined(&self) -> bool {
        self.cpus.is_none() && self.memory_bytes.is_none()
    }

    /// Checks the values make sense: a CPU quota of at least 0.1 CPU (the kernel's
    /// minimum quota is 1 ms per [`CPU_PERIOD_US`] period) and a memory limit of at least
    /// [`MIN_MEMORY_BYTES`].
    pub fn validate(&self) -> Result<(), ConfineError> {
        if let Some(cpus) = self.cpus
            && !(0.1..=100_000.0).contains(&cpus)
        {
            return Err(ConfineError::InvalidLimits(format!(
                "--cpus {cpus} is not a usable CPU quota; give a number of CPUs such as 1, 0.5 or 2 (at least 0.1)"
            )));
        }
        if let Some(bytes) = self.memory_bytes
            && bytes < MIN_MEMORY_BYTES
        {
            return Err(ConfineError::InvalidLimits(format!(
                "a memory limit of {} cannot run a program (the kernel would kill it as it \
                 starts); give at least {}, such as 2G or 512M",
                format_bytes(bytes),
                format_bytes(MIN_MEMORY_BYTES)
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Limits {
    /// e.g. "1 CPU, 2.0 GiB", "0.5 CPU, no memory limit", "unconfined".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unconfined() {
            return f.write_str("unconfined");
        }
        match self.cpus {
            Some(cpus) => write!(f, "{cpus} CPU")?,
            None => f.write_str("no CPU limit")?,
        }
        match self.memory_bytes {
            Some(bytes) => write!(f, ", {}", format_bytes(bytes)),
            None => f.write_str(", no memory limit"),
        }
    }
}

/// Parses a memory size such as `2G`, `512M`, `1.5G`, `64MiB`, `4k` or `1048576` into
/// bytes.
///
/// Units are **binary** and case-insensitive: `K`/`KB`/`KiB` = 1024 bytes, `M`/`MB`/`MiB` =
/// 1024², `G`/`GB`/`GiB` = 1024³, `T`/`TB`/`TiB` = 1024⁴; `B` or no unit means bytes
/// (whole bytes only). So `2G` is 2 GiB = 2,147,483,648 bytes, as with `docker --memory`.
/// Zero, negative numbers and anything else are refused with a message saying what is
/// accepted.
pub fn parse_memory_size(text: &str) -> Result<u64, String> {
    const ACCEPTED: &str =
        "use a size such as 2G, 512M, 1.5G, 64MiB or 1048576 (binary units: 1K = 1024 bytes)";
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim_start();
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "invalid memory size {text:?}: unknown unit; {ACCEPTED}"
            ));
        }
    };
    let valid_number = !number.is_empty()
        && number.chars().filter(|&c| c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    if !valid_number {
        return Err(format!("invalid memory size {text:?}: {ACCEPTED}"));
    }
    let bytes = if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid memory size {text:?}: {ACCEPTED}"))?;
        let bytes = value * (1u64 << shift) as f64;
        if bytes.fract() != 0.0 && shift == 0 {
            return Err(format!(
                "invalid memory size {text:?}: a number of bytes must be whole; {ACCEPTED}"
            ));
        }
        if !(bytes.is_finite() && bytes < u64::MAX as f64) {
            return Err(format!("invalid memory size {text:?}: too large"));
        }
        bytes.round() as u64
    } else {
        let value: u64 = number
            .parse()
            .map_err(|_| format!("invalid memory size {text:?}: too large"))?;
        value
            .checked_mul(1u64 << shift)
            .ok_or_else(|| format!("invalid memory size {text:?}: too large"))?
    };
    if bytes == 0 {
        return Err(format!(
            "invalid memory size {text:?}: a memory limit must be more than 0; {ACCEPTED}"
        ));
    }
    Ok(bytes)
}
