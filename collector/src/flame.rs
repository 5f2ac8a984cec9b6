//! A pprof profile as text: per trace segment (its `traceSegmentID` label), the stacks of its
//! samples merged into a tree of frames, outermost first, each with its sample count.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use skytrace_proto::pprof::{Profile, Sample};

/// Frames under this share of their segment's samples are left out (and counted).
const MIN_SHARE: f64 = 0.02;

/// Frames shown at the end of a run of single calls (the rest of the run is elided).
const TAIL: usize = 5;

/// Deeper frames are drawn at this depth.
const MAX_INDENT: usize = 40;

#[derive(Default)]
struct Node {
    count: i64,
    children: BTreeMap<String, Node>,
}

/// Draws `profile` per segment: a line per segment (its id, trace id, samples and their CPU
/// time), then its frames as a tree with sample counts. Samples without a segment label (an
/// on-demand profile's) are drawn together.
///
/// ```
/// use skytrace_collector::render_profile;
/// use skytrace_collector::skytrace_proto::pprof::Profile;
///
/// assert_eq!(render_profile(&Profile::default()), "no samples\n");
/// ```
pub fn render_profile(profile: &Profile) -> String {
    let text = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| profile.string_table.get(i))
            .map_or("", String::as_str)
    };
    let label = |sample: &Sample, key: &str| {
        sample
            .label
            .iter()
            .find(|l| text(l.key) == key)
            .map(|l| text(l.str).to_owned())
    };
    let mut groups: BTreeMap<(String, String), Node> = BTreeMap::new();
    for sample in &profile.sample {
        let segment = label(sample, "traceSegmentID").unwrap_or_default();
        let trace = label(sample, "traceID").unwrap_or_default();
        let count = sample.value.first().copied().unwrap_or(1);
        let root = groups.entry((segment, trace)).or_default();
        root.count += count;
        let mut node = root;
        for &id in sample.location_id.iter().rev() {
            let name = usize::try_from(id)
                .ok()
                .and_then(|id| profile.location.get(id.checked_sub(1)?))
                .and_then(|l| l.line.first())
                .and_then(|line| {
                    let f = profile
                        .function
                        .get(usize::try_from(line.function_id).ok()?.checked_sub(1)?)?;
                    Some(text(f.name).to_owned())
                })
                .unwrap_or_else(|| format!("location {id}"));
            node = node.children.entry(name).or_default();
            node.count += count;
        }
    }
    if groups.is_empty() {
        return "no samples\n".to_owned();
    }
    let period_ms = profile.period as f64 / 1e6;
    let mut out = String::new();
    for ((segment, trace), root) in &groups {
        if segment.is_empty() {
            let _ = write!(out, "all samples:");
        } else {
            let _ = write!(out, "segment {segment} (trace {trace}):");
        }
        let _ = writeln!(
            out,
            " {} samples, {:.0} ms of CPU",
            root.count,
            root.count as f64 * period_ms
        );
        let min = ((root.count as f64 * MIN_SHARE).ceil() as i64).max(1);
        let mut hidden = 0;
        draw(&mut out, root, root.count, 0, min, &mut hidden);
        if hidden > 0 {
            let _ = writeln!(
                out,
                "  ({hidden} samples in frames under {:.0} % not shown)",
                MIN_SHARE * 100.0
            );
        }
    }
    out
}

fn draw(out: &mut String, node: &Node, total: i64, depth: usize, min: i64, hidden: &mut i64) {
    let mut children: Vec<_> = node.children.iter().collect();
    children.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
    for (name, child) in children {
        if child.count < min {
            *hidden += child.count;
            continue;
        }
        // A run of frames each calling only the next (an async stack's many `poll`s) is drawn
        // at one depth, its middle elided: the tree stays as deep as its branches.
        let mut chain = vec![name.as_str()];
        let mut tail = child;
        while tail.children.len() == 1 {
            let Some((next_name, next)) = tail.children.iter().next() else {
                break;
            };
            if next.count != tail.count {
                break;
            }
            chain.push(next_name);
            tail = next;
        }
        let share = child.count as f64 * 100.0 / total.max(1) as f64;
        let indent = depth.min(MAX_INDENT) * 2;
        let mut line = |text: &str| {
            let _ = writeln!(
                out,
                "{:>7} {:>5.1}%  {:indent$}{text}",
                child.count, share, ""
            );
        };
        // The run's first frame, then its last few (where the code of interest usually is).
        let shown_tail = chain.len().saturating_sub(1).min(TAIL);
        let elided = chain.len() - 1 - shown_tail;
        if let Some(first) = chain.first() {
            line(first);
        }
        if elided > 0 {
            line(&format!("… {elided} frames …"));
        }
        for frame in &chain[chain.len() - shown_tail..] {
            line(frame);
        }
        draw(out, tail, total, depth + 1, min, hidden);
    }
}

#[cfg(test)]
mod tests {
    use skytrace_proto::pprof::{Function, Label, Line, Location};

    use super::*;

    #[test]
    fn draws_each_segment_as_a_tree_with_counts() {
        let strings = [
            "",
            "main",
            "handler",
            "burn",
            "traceSegmentID",
            "seg-1",
            "traceID",
            "t-1",
        ];
        let location = |id: u64| Location {
            id,
            line: vec![Line {
                function_id: id,
                ..Default::default()
            }],
            ..Default::default()
        };
        let function = |id: u64, name: i64| Function {
            id,
            name,
            ..Default::default()
        };
        let labels = vec![
            Label {
                key: 4,
                str: 5,
                ..Default::default()
            },
            Label {
                key: 6,
                str: 7,
                ..Default::default()
            },
        ];
        let profile = Profile {
            string_table: strings.iter().map(|s| (*s).to_owned()).collect(),
            location: vec![location(1), location(2), location(3)],
            function: vec![function(1, 1), function(2, 2), function(3, 3)],
            sample: vec![
                Sample {
                    location_id: vec![3, 2, 1],
                    value: vec![8, 80_000_000],
                    label: labels.clone(),
                },
                Sample {
                    location_id: vec![2, 1],
                    value: vec![2, 20_000_000],
                    label: labels,
                },
            ],
            period: 10_000_000,
            ..Default::default()
        };
        assert_eq!(
            render_profile(&profile),
            "segment seg-1 (trace t-1): 10 samples, 100 ms of CPU\n\
             \x20    10 100.0%  main\n\
             \x20    10 100.0%  handler\n\
             \x20     8  80.0%    burn\n"
        );
    }
}
