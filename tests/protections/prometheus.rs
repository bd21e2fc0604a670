//! A strict parser of the Prometheus text exposition format, so the tests read `/metrics`
//! the way a scraper does and fail on anything a scraper would reject (see
//! [`parse_exposition`]).

use std::collections::{HashMap, HashSet};

pub type Labels = Vec<(String, String)>;

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(l, w)| l == k && w == v))
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A sample value in Go's `ParseFloat` syntax, as the format requires.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) =>
        {
            text.parse().map_err(|e| format!("bad value {text:?}: {e}"))
        }
        _ => Err(format!("bad value {text:?}")),
    }
}

/// `{name="value",...}` with the format's escapes (`\\`, `\"`, `\n`); returns the labels
/// and the rest of the line.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name} value is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?} in label {name}")),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                '\n' => return Err("raw newline in label value".into()),
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("label {name} value is not terminated"))?;
        if labels.iter().any(|(l, _)| l == name) {
            return Err(format!("label {name} repeated"));
        }
        labels.push((name.to_string(), value));
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} after label {name}"));
        }
    }
}

/// A strict reader of the Prometheus text exposition format 0.0.4: HELP and TYPE at most
/// once per family and before its samples, every sample belonging to a declared family,
/// each family's samples in one group, no repeated series, valid names, labels and
/// values, histograms with cumulative buckets ending in `+Inf` equal to `_count`.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut finished_families: HashSet<String> = HashSet::new();
    let mut current_family: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let context = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let keyword = words.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let name = words.next().unwrap_or("");
            if !is_metric_name(name) {
                return Err(context(format!("bad metric name {name:?}")));
            }
            if samples
                .iter()
                .any(|s: &Sample| family_of(&s.name, &types) == name)
            {
                return Err(context(format!("{keyword} after samples of {name}")));
            }
            if keyword == "HELP" {
                if !helps.insert(name.to_string()) {
                    return Err(context("second HELP".into()));
                }
            } else {
                let kind = words.next().unwrap_or("");
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(context(format!("bad type {kind:?}")));
                }
                if types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(context("second TYPE".into()));
                }
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| context("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(context(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(after) => parse_labels(after).map_err(context)?,
            None => (Vec::new(), &line[name_end..]),
        };
        let mut fields = rest.split(' ').filter(|f| !f.is_empty());
        let value = parse_value(fields.next().ok_or_else(|| context("no value".into()))?)
            .map_err(context)?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|e| context(format!("bad timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(context("trailing fields".into()));
        }
        let family = family_of(name, &types);
        let Some(kind) = types.get(&family) else {
            return Err(context(format!("sample of undeclared family {family}")));
        };
        if kind == "counter" && (value < 0.0 || value.is_nan()) {
            return Err(context("negative counter".into()));
        }
        if current_family.as_deref() != Some(family.as_str()) {
            if finished_families.contains(&family) {
                return Err(context(format!("family {family} is not one group")));
            }
            if let Some(previous) = current_family.replace(family.clone()) {
                finished_families.insert(previous);
            }
        }
        let mut sorted = labels.clone();
        sorted.sort();
        if !series.insert(format!("{name}{sorted:?}")) {
            return Err(context("repeated series".into()));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for (family, kind) in &types {
        if kind == "histogram" {
            check_histogram(family, &samples)?;
        }
    }
    Ok(samples)
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and `_count` series
/// belong to the histogram.
fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|k| k == "histogram")
        {
            return base.to_string();
        }
    }
    name.to_string()
}

fn check_histogram(family: &str, samples: &[Sample]) -> Result<(), String> {
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == format!("{family}_bucket"))
        .collect();
    let mut previous = (f64::NEG_INFINITY, 0.0);
    for bucket in &buckets {
        let le = bucket
            .labels
            .iter()
            .find(|(l, _)| l == "le")
            .ok_or_else(|| format!("{family} bucket without le"))?;
        let le = parse_value(&le.1)?;
        if le <= previous.0 || bucket.value < previous.1 {
            return Err(format!("{family} buckets not increasing at le={le}"));
        }
        previous = (le, bucket.value);
    }
    if previous.0 != f64::INFINITY {
        return Err(format!("{family} has no +Inf bucket"));
    }
    let count = samples
        .iter()
        .find(|s| s.name == format!("{family}_count"))
        .ok_or_else(|| format!("{family} has no _count"))?;
    samples
        .iter()
        .find(|s| s.name == format!("{family}_sum"))
        .ok_or_else(|| format!("{family} has no _sum"))?;
    if count.value != previous.1 {
        return Err(format!("{family}: +Inf bucket != _count"));
    }
    Ok(())
}
