//! Terminal rendering of received segments as trace trees, like SkyWalking's trace view.

use std::collections::HashMap;
use std::fmt::Write as _;

use skytrace_proto::v3::{SegmentObject, SpanLayer, SpanObject, SpanType};

/// Renders `segments` as one indented tree per trace (in order of first appearance).
///
/// Each trace starts with a header line: the trace id, how many segments and spans it has and
/// its total duration (first start to last end). Then one line per span, drawn under its parent
/// with `├─`, `└─` and `│`: the service in brackets (on the first span of each segment), the
/// operation name, the kind and layer (an `Unknown` layer is left out), the duration in ms,
/// `→ peer` for exit spans, `ERROR` when the span is an error, and the tags as `k=v`.
///
/// Segments are linked through the refs of their first span: a segment whose first span refers
/// to span `P` of segment `S` is drawn under that span, so calls between services and tasks
/// nest as they happened. Spans whose parent is unknown (not received, or never sent) become
/// roots of their trace. Siblings are ordered by start time. Control characters in names are
/// escaped, so the output is safe to print.
///
/// ```
/// use skytrace_collector::render_trace_tree;
/// use skytrace_collector::skytrace_proto::v3::{SegmentObject, SpanObject, SpanType};
///
/// let segment = SegmentObject {
///     trace_id: "t1".into(),
///     trace_segment_id: "s1".into(),
///     service: "shop".into(),
///     spans: vec![
///         SpanObject {
///             span_id: 1,
///             parent_span_id: 0,
///             start_time: 1_010,
///             end_time: 1_020,
///             operation_name: "load".into(),
///             span_type: SpanType::Local as i32,
///             ..Default::default()
///         },
///         SpanObject {
///             span_id: 0,
///             parent_span_id: -1,
///             start_time: 1_000,
///             end_time: 1_030,
///             operation_name: "GET:/cart".into(),
///             span_type: SpanType::Entry as i32,
///             ..Default::default()
///         },
///     ],
///     ..Default::default()
/// };
/// assert_eq!(
///     render_trace_tree(&[segment]),
///     "trace t1: 1 segment, 2 spans, 30 ms\n\
///      └─ [shop] GET:/cart (Entry) 30 ms\n   \
///         └─ load (Local) 10 ms\n",
/// );
/// ```
pub fn render_trace_tree(segments: &[SegmentObject]) -> String {
    let mut traces: Vec<(&str, Vec<&SegmentObject>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for segment in segments {
        let i = *index.entry(&segment.trace_id).or_insert_with(|| {
            traces.push((&segment.trace_id, Vec::new()));
            traces.len() - 1
        });
        traces[i].1.push(segment);
    }

    let mut out = String::new();
    for (i, (trace_id, segments)) in traces.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_trace(&mut out, trace_id, segments);
    }
    out
}

/// One span of the trace, with where it sits.
struct Node<'a> {
    segment: usize,
    span: &'a SpanObject,
    parent: Option<usize>,
}

fn render_trace(out: &mut String, trace_id: &str, segments: &[&SegmentObject]) {
    // Every span of the trace, and per segment its span ids (first occurrence wins).
    let mut nodes: Vec<Node<'_>> = Vec::new();
    let mut span_ids: Vec<HashMap<i32, usize>> = Vec::with_capacity(segments.len());
    let mut segment_ids: HashMap<&str, usize> = HashMap::new();
    for (s, segment) in segments.iter().enumerate() {
        segment_ids.entry(&segment.trace_segment_id).or_insert(s);
        let mut ids = HashMap::new();
        for span in &segment.spans {
            ids.entry(span.span_id).or_insert(nodes.len());
            nodes.push(Node {
                segment: s,
                span,
                parent: None,
            });
        }
        span_ids.push(ids);
    }

    // Parents: within the segment by parentSpanId, else across segments by the refs.
    for (n, node) in nodes.iter_mut().enumerate() {
        let (segment, span) = (node.segment, node.span);
        let local = (span.parent_span_id >= 0)
            .then(|| span_ids[segment].get(&span.parent_span_id).copied())
            .flatten()
            .filter(|&p| p != n);
        node.parent = local.or_else(|| {
            span.refs.iter().find_map(|r| {
                let parent_segment = *segment_ids.get(r.parent_trace_segment_id.as_str())?;
                if parent_segment == segment {
                    return None;
                }
                span_ids[parent_segment].get(&r.parent_span_id).copied()
            })
        });
    }

    let by_start = |a: &usize, b: &usize| {
        let (x, y) = (&nodes[*a], &nodes[*b]);
        (x.span.start_time, x.segment, *a).cmp(&(y.span.start_time, y.segment, *b))
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        match node.parent {
            Some(p) => children[p].push(n),
            None => roots.push(n),
        }
    }
    roots.sort_by(by_start);
    for list in &mut children {
        list.sort_by(by_start);
    }

    // Header.
    let start = nodes.iter().map(|n| n.span.start_time).min().unwrap_or(0);
    let end = nodes.iter().map(|n| n.span.end_time).max().unwrap_or(0);
    out.push_str("trace ");
    push_clean(out, trace_id);
    let _ = writeln!(
        out,
        ": {}, {}, {} ms",
        plural(segments.len(), "segment"),
        plural(nodes.len(), "span"),
        end.saturating_sub(start).max(0),
    );

    // Spans that are part of a parent cycle (only possible with broken input) are reachable
    // from no root: draw them as extra roots after the real ones.
    let mut visited = vec![false; nodes.len()];
    let mut top: Vec<usize> = roots;
    let mut next_extra = 0;
    loop {
        let unvisited: Vec<usize> = top.iter().copied().filter(|&n| !visited[n]).collect();
        for &n in &unvisited {
            visited[n] = true;
        }
        // Depth-first with an explicit stack: deep traces can't overflow the call stack.
        let mut stack: Vec<(usize, String, bool)> = unvisited
            .iter()
            .enumerate()
            .rev()
            .map(|(i, &n)| (n, String::new(), i + 1 == unvisited.len()))
            .collect();
        while let Some((n, prefix, last)) = stack.pop() {
            out.push_str(&prefix);
            out.push_str(if last { "└─ " } else { "├─ " });
            let node = &nodes[n];
            let first_of_segment = node.parent.is_none_or(|p| nodes[p].segment != node.segment);
            push_span(out, segments[node.segment], node.span, first_of_segment);

            let below: Vec<usize> = children[n]
                .iter()
                .copied()
                .filter(|&c| !visited[c])
                .collect();
            let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
            for (i, &c) in below.iter().enumerate().rev() {
                visited[c] = true;
                stack.push((c, child_prefix.clone(), i + 1 == below.len()));
            }
        }
        while next_extra < nodes.len() && visited[next_extra] {
            next_extra += 1;
        }
        if next_extra == nodes.len() {
            break;
        }
        top = vec![next_extra];
    }

    for segment in segments.iter().filter(|s| s.spans.is_empty()) {
        out.push_str("└─ [");
        push_clean(out, &segment.service);
        out.push_str("] (segment ");
        push_clean(out, &segment.trace_segment_id);
        out.push_str(" has no spans)\n");
    }
}

/// Appends one span line (after its tree glyphs).
fn push_span(out: &mut String, segment: &SegmentObject, span: &SpanObject, first: bool) {
    if first {
        out.push('[');
        push_clean(out, &segment.service);
        out.push_str("] ");
    }
    if span.operation_name.is_empty() {
        out.push_str("(no name)");
    } else {
        push_clean(out, &span.operation_name);
    }

    let kind = match SpanType::try_from(span.span_type) {
        Ok(kind) => kind.as_str_name().to_owned(),
        Err(_) => format!("SpanType({})", span.span_type),
    };
    let layer = match SpanLayer::try_from(span.span_layer) {
        Ok(SpanLayer::Unknown) => None,
        Ok(layer) => Some(layer.as_str_name().to_owned()),
        Err(_) => Some(format!("SpanLayer({})", span.span_layer)),
    };
    match layer {
        Some(layer) => {
            let _ = write!(out, " ({kind}, {layer})");
        }
        None => {
            let _ = write!(out, " ({kind})");
        }
    }
    let _ = write!(
        out,
        " {} ms",
        span.end_time.saturating_sub(span.start_time).max(0)
    );

    if span.span_type == SpanType::Exit as i32 && !span.peer.is_empty() {
        out.push_str(" → ");
        push_clean(out, &span.peer);
    }
    if span.is_error {
        out.push_str(" ERROR");
    }
    for tag in &span.tags {
        out.push(' ');
        push_clean(out, &tag.key);
        out.push('=');
        push_clean(out, &tag.value);
    }
    if first && segment.is_size_limited {
        out.push_str(" (segment size-limited)");
    }
    out.push('\n');
}

/// Appends `text` with control characters (newlines, terminal escapes) escaped.
fn push_clean(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytrace_proto::v3::{KeyStringValuePair, RefType, SegmentReference};

    fn span(id: i32, parent: i32, start: i64, end: i64, kind: SpanType, op: &str) -> SpanObject {
        SpanObject {
            span_id: id,
            parent_span_id: parent,
            start_time: start,
            end_time: end,
            operation_name: op.into(),
            span_type: kind as i32,
            ..Default::default()
        }
    }

    fn tag(key: &str, value: &str) -> KeyStringValuePair {
        KeyStringValuePair {
            key: key.into(),
            value: value.into(),
        }
    }

    fn reference(kind: RefType, segment: &str, span: i32) -> SegmentReference {
        SegmentReference {
            ref_type: kind as i32,
            trace_id: "trace-1".into(),
            parent_trace_segment_id: segment.into(),
            parent_span_id: span,
            ..Default::default()
        }
    }

    fn segment(id: &str, service: &str, spans: Vec<SpanObject>) -> SegmentObject {
        SegmentObject {
            trace_id: "trace-1".into(),
            trace_segment_id: id.into(),
            service: service.into(),
            service_instance: "i".into(),
            spans,
            is_size_limited: false,
        }
    }

    /// frontend: entry → (exit to backend, local) ; backend: entry → exit to db (error);
    /// a cross-thread segment of the frontend under its local span.
    fn two_services() -> Vec<SegmentObject> {
        let mut entry = span(0, -1, 1_000, 1_120, SpanType::Entry, "GET:/checkout");
        entry.span_layer = SpanLayer::Http as i32;
        entry.tags = vec![tag("http.method", "GET"), tag("status_code", "200")];
        let mut call = span(1, 0, 1_010, 1_090, SpanType::Exit, "/api/price");
        call.span_layer = SpanLayer::Http as i32;
        call.peer = "backend:8080".into();
        let spawn = span(2, 0, 1_095, 1_100, SpanType::Local, "spawn-audit");
        // Reported in finish order, like the agents do: the entry span comes last.
        let frontend = segment("seg-front", "frontend", vec![call, spawn, entry]);

        let mut backend_entry = span(0, -1, 1_020, 1_080, SpanType::Entry, "/api/price");
        backend_entry.span_layer = SpanLayer::Http as i32;
        backend_entry.refs = vec![reference(RefType::CrossProcess, "seg-front", 1)];
        let mut query = span(1, 0, 1_030, 1_070, SpanType::Exit, "SELECT price");
        query.span_layer = SpanLayer::Database as i32;
        query.peer = "db:5432".into();
        query.is_error = true;
        query.tags = vec![tag("db.type", "sql")];
        let backend = segment("seg-back", "backend", vec![backend_entry, query]);

        let mut audit = span(0, -1, 1_100, 1_150, SpanType::Local, "audit");
        audit.refs = vec![reference(RefType::CrossThread, "seg-front", 2)];
        let worker = segment("seg-audit", "frontend", vec![audit]);

        vec![worker, backend, frontend]
    }

    #[test]
    fn links_services_and_tasks() {
        let rendered = render_trace_tree(&two_services());
        let expected = "\
trace trace-1: 3 segments, 6 spans, 150 ms
└─ [frontend] GET:/checkout (Entry, Http) 120 ms http.method=GET status_code=200
   ├─ /api/price (Exit, Http) 80 ms → backend:8080
   │  └─ [backend] /api/price (Entry, Http) 60 ms
   │     └─ SELECT price (Exit, Database) 40 ms → db:5432 ERROR db.type=sql
   └─ spawn-audit (Local) 5 ms
      └─ [frontend] audit (Local) 50 ms
";
        assert_eq!(rendered, expected, "\n{rendered}");
    }

    #[test]
    fn unknown_parents_become_roots() {
        let mut entry = span(0, -1, 5, 9, SpanType::Entry, "consume");
        entry.refs = vec![reference(RefType::CrossProcess, "never-received", 3)];
        let orphan = span(4, 2, 6, 7, SpanType::Local, "orphan");
        let one = segment("s", "mq-consumer", vec![entry, orphan]);
        let rendered = render_trace_tree(&[one]);
        let expected = "\
trace trace-1: 1 segment, 2 spans, 4 ms
├─ [mq-consumer] consume (Entry) 4 ms
└─ [mq-consumer] orphan (Local) 1 ms
";
        assert_eq!(rendered, expected, "\n{rendered}");
    }

    #[test]
    fn groups_traces_and_survives_broken_input() {
        // Two segments referring to each other, a span that is its own parent, an empty
        // segment, a control character and nonsense times: all drawn, nothing hangs.
        let mut a = span(0, -1, i64::MIN, i64::MAX, SpanType::Entry, "a\x1b[2J");
        a.refs = vec![reference(RefType::CrossThread, "b", 0)];
        let mut b = span(0, 0, 3, 1, SpanType::Exit, "b");
        b.refs = vec![reference(RefType::CrossThread, "a", 0)];
        let mut other = segment("x", "other", vec![span(0, -1, 0, 1, SpanType::Local, "")]);
        other.trace_id = "trace-2".into();
        let segments = vec![
            segment("a", "svc", vec![a]),
            other,
            segment("b", "svc", vec![b]),
            segment("empty", "svc", vec![]),
        ];
        let rendered = render_trace_tree(&segments);
        let expected = "\
trace trace-1: 3 segments, 2 spans, 9223372036854775807 ms
└─ [svc] a\\u{1b}[2J (Entry) 9223372036854775807 ms
   └─ [svc] b (Exit) 0 ms
└─ [svc] (segment empty has no spans)

trace trace-2: 1 segment, 1 span, 1 ms
└─ [other] (no name) (Local) 1 ms
";
        assert_eq!(rendered, expected, "\n{rendered}");
    }

    #[test]
    fn empty_input() {
        assert_eq!(render_trace_tree(&[]), "");
    }
}
