//! The profile OAP receives: a gzip'd pprof `Profile`, sent in chunks of at most 1 MiB.
//!
//! As the Go agent's: values `samples`/`count` then `cpu`/`nanoseconds`, period 10 ms of CPU;
//! for trace profiling, each sample labelled `traceSegmentID`, `traceID` and `spanID` (OAP
//! splits the profile per segment by the first). OAP resolves a location id N as the profile's
//! (N-1)th location and a function id likewise, so both run 1, 2, 3, ... in order; each
//! location has one line naming its function (OAP skips a location without one).

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message as _;
use skytrace_proto::pprof::{Function, Label, Line, Location, Profile, Sample, ValueType};
use skytrace_sampler::Symbolizer;

use super::aggregate::Aggregate;
use super::qualify::Kept;

/// The most bytes of one chunk sent to OAP.
pub(crate) const CHUNK: usize = 1024 * 1024;

/// Label keys, as the Go agent writes them and OAP's `PprofSegmentParser` reads them.
pub(crate) const SEGMENT_LABEL: &str = "traceSegmentID";
pub(crate) const TRACE_LABEL: &str = "traceID";
pub(crate) const SPAN_LABEL: &str = "spanID";

/// Which samples a profile keeps.
pub(crate) enum Keep<'a> {
    /// Every sample, unlabelled: an on-demand CPU profile.
    All,
    /// The samples of these segments only, labelled: a trace-profiling task.
    Segments(&'a HashMap<String, Kept>),
}

/// The string table: each string once, `""` first.
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut strings = Strings::default();
        strings.id("");
        strings
    }

    fn id(&mut self, text: &str) -> i64 {
        if let Some(&id) = self.index.get(text) {
            return id;
        }
        let id = self.table.len() as i64;
        self.table.push(text.to_owned());
        self.index.insert(text.to_owned(), id);
        id
    }
}

/// Builds the profile of `samples` started at `started`, lasting `duration`.
pub(crate) fn build(
    samples: &Aggregate,
    symbols: &mut Symbolizer,
    keep: Keep<'_>,
    started: SystemTime,
    duration: Duration,
    period: Duration,
) -> Profile {
    let mut strings = Strings::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_of: HashMap<u64, u64> = HashMap::new();
    let mut functions: Vec<Function> = Vec::new();
    let mut function_of: HashMap<String, u64> = HashMap::new();
    let period_ns = i64::try_from(period.as_nanos()).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    // Stable output: the same samples make the same bytes.
    let mut entries: Vec<_> = samples.iter().collect();
    entries.sort_by(|a, b| (&a.0.tag, &a.0.frames).cmp(&(&b.0.tag, &b.0.frames)));
    for (key, count) in entries {
        let labels = match (&keep, &key.tag) {
            (Keep::All, _) => Vec::new(),
            (Keep::Segments(kept), Some((segment, span))) => match kept.get(&**segment) {
                Some(info) => vec![
                    label(&mut strings, SEGMENT_LABEL, segment),
                    label(&mut strings, TRACE_LABEL, &info.trace_id),
                    label(&mut strings, SPAN_LABEL, &span.to_string()),
                ],
                None => continue,
            },
            (Keep::Segments(_), None) => continue,
        };
        let location_id = key
            .frames
            .iter()
            .map(|&address| {
                *location_of.entry(address).or_insert_with(|| {
                    let name = symbols.function(address);
                    let function_id = *function_of.entry(name.clone()).or_insert_with(|| {
                        let id = functions.len() as u64 + 1;
                        let name = strings.id(&name);
                        functions.push(Function {
                            id,
                            name,
                            system_name: name,
                            ..Default::default()
                        });
                        id
                    });
                    let id = locations.len() as u64 + 1;
                    locations.push(Location {
                        id,
                        address,
                        line: vec![Line {
                            function_id,
                            line: 0,
                            column: 0,
                        }],
                        ..Default::default()
                    });
                    id
                })
            })
            .collect();
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        out.push(Sample {
            location_id,
            value: vec![count, count.saturating_mul(period_ns)],
            label: labels,
        });
    }
    let sample_type = vec![
        value_type(&mut strings, "samples", "count"),
        value_type(&mut strings, "cpu", "nanoseconds"),
    ];
    let period_type = Some(value_type(&mut strings, "cpu", "nanoseconds"));
    Profile {
        sample_type,
        sample: out,
        location: locations,
        function: functions,
        time_nanos: started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        duration_nanos: i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
        period_type,
        period: period_ns,
        string_table: strings.table,
        ..Default::default()
    }
}

fn label(strings: &mut Strings, key: &str, value: &str) -> Label {
    Label {
        key: strings.id(key),
        str: strings.id(value),
        ..Default::default()
    }
}

fn value_type(strings: &mut Strings, kind: &str, unit: &str) -> ValueType {
    ValueType {
        r#type: strings.id(kind),
        unit: strings.id(unit),
    }
}

/// The profile's bytes, gzip'd (OAP reads gzip and plain alike; pprof files are gzip'd).
pub(crate) fn gzip(profile: &Profile) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a `Vec` does not fail.
    let _ = encoder.write_all(&profile.encode_to_vec());
    encoder.finish().unwrap_or_default()
}

/// `bytes` in chunks of at most [`CHUNK`]; one empty chunk for no bytes, so that a last one
/// is always sent.
pub(crate) fn chunks(bytes: &[u8]) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(CHUNK).collect()
}
