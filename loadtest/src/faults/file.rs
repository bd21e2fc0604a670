//! `--faults FILE`: a fault plan in TOML, for schedules too long for the command line.
//!
//! ```toml
//! [[fault]]
//! at = "20s"          # seconds after the load starts: 20, "20s", "1.5s"
//! action = "pause"
//! target = "api0"
//!
//! [[fault]]
//! every = "15s"       # again and again, through the load and the drain
//! action = "kill"
//! target = "worker0"
//!
//! [[fault]]
//! at = "30s"          # network faults (--network): partition, isolate, loss, rate, heal
//! action = "loss"
//! target = "client"
//! value = "5%"        # loss's share; rate's rate ("1mbit")
//!
//! [[fault]]
//! at = "40s"
//! action = "heal"     # no target: undoes every network fault
//! ```

use serde::Deserialize;

use super::plan::{Fault, FaultPlan, MIN_EVERY, When, parse_seconds};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    fault: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    at: Option<Time>,
    every: Option<Time>,
    action: String,
    #[serde(default)]
    target: String,
    value: Option<String>,
}

/// A time as a number of seconds or as text (`"20s"`, `"500ms"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Seconds(f64),
    Text(String),
}

impl Time {
    fn duration(&self) -> Result<std::time::Duration, String> {
        match self {
            Time::Seconds(s) => parse_seconds(&s.to_string()),
            Time::Text(t) => parse_seconds(t),
        }
    }
}

/// Parses a plan file's text; `name` (the path) is for the messages.
pub fn parse_file(name: &str, text: &str) -> Result<FaultPlan, String> {
    let file: PlanFile = toml::from_str(text).map_err(|e| {
        let message = e.message().to_string();
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        match line {
            Some(line) => format!("{name}:{line}: {message}"),
            None => format!("{name}: {message}"),
        }
    })?;
    let mut plan = FaultPlan::default();
    for (i, entry) in file.fault.iter().enumerate() {
        let n = i + 1;
        let when = match (&entry.at, &entry.every) {
            (Some(at), None) => When::At(
                at.duration()
                    .map_err(|e| format!("{name}: fault {n}: {e}"))?,
            ),
            (None, Some(every)) => {
                let every = every
                    .duration()
                    .map_err(|e| format!("{name}: fault {n}: {e}"))?;
                if every < MIN_EVERY {
                    return Err(format!(
                        "{name}: fault {n}: every is too often; at least every {} ms",
                        MIN_EVERY.as_millis()
                    ));
                }
                When::Every(every)
            }
            _ => {
                return Err(format!(
                    "{name}: fault {n}: give `at` or `every`, one of them"
                ));
            }
        };
        let action = (entry.action.parse()).map_err(|e| format!("{name}: fault {n}: {e}"))?;
        let fault = Fault::new(when, action, &entry.target, entry.value.as_deref())
            .map_err(|e| format!("{name}: fault {n}: {e}"))?;
        plan.faults.push(fault);
    }
    Ok(plan)
}
