//! Terminal rendering of received segments as trace trees, like SkyWalking's trace view.

use std::collections::HashMap;
use std::fmt::Write as _;

use skytrace_proto::v3::{
    LogData, RefType, SegmentObject, SegmentReference, SpanLayer, SpanObject, SpanType,
    log_data_body,
};

/// How much [`render_trace_tree_with`] shows.
///
/// ```
/// use skytrace_collector::Detail;
///
/// assert_eq!(Detail::default(), Detail::Normal);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Detail {
    /// What [`render_trace_tree`] shows: span lines, their logs, and the refs the tree does not
    /// already show by drawing a segment under its parent span.
    #[default]
    Normal,
    /// Also every ref (those the tree already shows too) and, under the first span of each
    /// segment, its segment id and service instance.
    Verbose,
}

/// Renders `segments` as one indented tree per trace (in order of first appearance), with
/// [`Detail::Normal`]; see [`render_trace_tree_with`] for the format.
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
    render_trace_tree_with(segments, Detail::Normal)
}

/// Renders `segments` as one indented tree per trace (in order of first appearance).
///
/// Each trace starts with a header line: the trace id, how many segments and spans it has and
/// its total duration (first start to last end). Then one line per span, drawn under its parent
/// with `├─`, `└─` and `│`: the service in brackets (on the first span of each segment), the
/// operation name, the kind and layer (an `Unknown` layer is left out), the duration in ms,
/// `← peer` for entry spans (the client's address) and `→ peer` for exit spans (the address
/// called), `ERROR` when the span is an error, and the tags as `k=v`.
///
/// Under a span line, before its children, come:
/// - `ref …` lines: where the segment was continued from — the kind (`CrossProcess` from
///   another service's `sw8`, `CrossThread` from another task of the same service), the
///   parent's `service/instance` and endpoint, then its segment id, span id and the address the
///   caller used. With [`Detail::Normal`] only the refs the tree does not show already (the
///   parent segment was not received: the caller reports elsewhere, or not yet); with
///   [`Detail::Verbose`] all of them.
/// - `log +N ms k=v …` lines: the span's logs in time order, `N` counted from the span's start
///   (an error's `event=error error.kind=… message=…`).
///
/// Segments are linked through the refs of their first span: a segment whose first span refers
/// to span `P` of segment `S` is drawn under that span, so calls between services and tasks
/// nest as they happened. Spans whose parent is unknown (not received, or never sent) become
/// roots of their trace. Siblings are ordered by start time. Control characters in names are
/// escaped, so the output is safe to print.
///
/// ```
/// use skytrace_collector::skytrace_proto::v3::{
///     KeyStringValuePair, Log, RefType, SegmentObject, SegmentReference, SpanObject, SpanType,
/// };
/// use skytrace_collector::{Detail, render_trace_tree_with};
///
/// let entry = SpanObject {
///     span_id: 0,
///     parent_span_id: -1,
///     start_time: 1_000,
///     end_time: 1_030,
///     operation_name: "GET:/cart".into(),
///     span_type: SpanType::Entry as i32,
///     peer: "10.0.0.9:50312".into(),
///     refs: vec![SegmentReference {
///         ref_type: RefType::CrossProcess as i32,
///         trace_id: "t1".into(),
///         parent_trace_segment_id: "gw-seg".into(),
///         parent_span_id: 1,
///         parent_service: "gateway".into(),
///         parent_service_instance: "gw-1".into(),
///         parent_endpoint: "GET:/api/cart".into(),
///         network_address_used_at_peer: "shop:8080".into(),
///     }],
///     logs: vec![Log {
///         time: 1_012,
///         data: vec![KeyStringValuePair { key: "message".into(), value: "slow".into() }],
///     }],
///     ..Default::default()
/// };
/// let segment = SegmentObject {
///     trace_id: "t1".into(),
///     trace_segment_id: "s1".into(),
///     service: "shop".into(),
///     service_instance: "shop-1".into(),
///     spans: vec![entry],
///     ..Default::default()
/// };
/// assert_eq!(
///     render_trace_tree_with(&[segment], Detail::Verbose),
///     "trace t1: 1 segment, 1 span, 30 ms\n\
///      └─ [shop] GET:/cart (Entry) 30 ms ← 10.0.0.9:50312\n     \
///         segment s1 of shop/shop-1\n     \
///         ref CrossProcess from gateway/gw-1 GET:/api/cart (segment gw-seg, span 1, address shop:8080)\n     \
///         log +12 ms message=slow\n",
/// );
/// ```
pub fn render_trace_tree_with(segments: &[SegmentObject], detail: Detail) -> String {
    render_trace_tree_with_logs(segments, &[], detail)
}

/// [`render_trace_tree_with`], and the log records OAP's log view would show (`LogData`, as the
/// `tracing` and `log` bridges report them) under the span they were written in:
/// `report [LEVEL] logger: text`. A record of the trace whose span is not in the tree is listed
/// after the tree; records of other traces, or of none, are left out.
///
/// ```
/// use skytrace_collector::skytrace_proto::v3::{
///     log_data_body, KeyStringValuePair, LogData, LogDataBody, LogTags, SegmentObject,
///     SpanObject, TextLog, TraceContext,
/// };
/// use skytrace_collector::{render_trace_tree_with_logs, Detail};
///
/// let segment = SegmentObject {
///     trace_id: "t1".into(),
///     trace_segment_id: "s1".into(),
///     service: "shop".into(),
///     spans: vec![SpanObject { span_id: 0, parent_span_id: -1, operation_name: "GET:/".into(), ..Default::default() }],
///     ..Default::default()
/// };
/// let log = LogData {
///     trace_context: Some(TraceContext { trace_id: "t1".into(), trace_segment_id: "s1".into(), span_id: 0 }),
///     body: Some(LogDataBody {
///         r#type: "TEXT".into(),
///         content: Some(log_data_body::Content::Text(TextLog { text: "slow".into() })),
///     }),
///     tags: Some(LogTags {
///         data: vec![
///             KeyStringValuePair { key: "level".into(), value: "WARN".into() },
///             KeyStringValuePair { key: "logger".into(), value: "shop::db".into() },
///         ],
///     }),
///     ..Default::default()
/// };
/// let text = render_trace_tree_with_logs(&[segment], &[log], Detail::Normal);
/// assert!(text.contains("report [WARN] shop::db: slow"), "{text}");
/// ```
pub fn render_trace_tree_with_logs(
    segments: &[SegmentObject],
    logs: &[LogData],
    detail: Detail,
) -> String {
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
        let reports: Vec<&LogData> = logs
            .iter()
            .filter(|l| {
                l.trace_context
                    .as_ref()
                    .is_some_and(|c| c.trace_id == *trace_id)
            })
            .collect();
        render_trace(&mut out, trace_id, segments, &reports, detail);
    }
    out
}

/// One span of the trace, with where it sits.
pub(crate) struct Node<'a> {
    pub(crate) segment: usize,
    pub(crate) span: &'a SpanObject,
    pub(crate) parent: Option<usize>,
    /// The index of the ref that gave `parent`, when it is in another segment.
    pub(crate) via_ref: Option<usize>,
}

/// The spans of one trace linked into a forest: parents within a segment by `parentSpanId`,
/// across segments by the refs of a segment's spans; children and roots ordered by start time.
pub(crate) struct Linked<'a> {
    pub(crate) nodes: Vec<Node<'a>>,
    pub(crate) children: Vec<Vec<usize>>,
    pub(crate) roots: Vec<usize>,
}

impl Linked<'_> {
    /// Whether node `n` is the first span of its segment drawn (its parent is elsewhere).
    pub(crate) fn first_of_segment(&self, n: usize) -> bool {
        let node = &self.nodes[n];
        node.parent
            .is_none_or(|p| self.nodes[p].segment != node.segment)
    }
}

/// Links the spans of `segments` (all of one trace).
pub(crate) fn link<'a>(segments: &[&'a SegmentObject]) -> Linked<'a> {
    // Every span of the trace, and per segment its span ids (first occurrence wins).
    let mut nodes: Vec<Node<'a>> = Vec::new();
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
                via_ref: None,
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
        if local.is_some() {
            node.parent = local;
            continue;
        }
        let by_ref = span.refs.iter().enumerate().find_map(|(i, r)| {
            let parent_segment = *segment_ids.get(r.parent_trace_segment_id.as_str())?;
            if parent_segment == segment {
                return None;
            }
            let parent = span_ids[parent_segment].get(&r.parent_span_id).copied()?;
            Some((parent, i))
        });
        node.parent = by_ref.map(|(parent, _)| parent);
        node.via_ref = by_ref.map(|(_, i)| i);
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
    Linked {
        nodes,
        children,
        roots,
    }
}

fn render_trace(
    out: &mut String,
    trace_id: &str,
    segments: &[&SegmentObject],
    reports: &[&LogData],
    detail: Detail,
) {
    let Linked {
        nodes,
        children,
        roots,
    } = link(segments);

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
            let segment = segments[node.segment];
            push_span(out, segment, node.span, first_of_segment);

            let below: Vec<usize> = children[n]
                .iter()
                .copied()
                .filter(|&c| !visited[c])
                .collect();
            let child_prefix = format!("{prefix}{}", if last { "   " } else { "│  " });
            // The span's details, under it and above its children.
            let detail_prefix = format!(
                "{child_prefix}{}",
                if below.is_empty() { "  " } else { "│ " }
            );
            if detail == Detail::Verbose && first_of_segment {
                out.push_str(&detail_prefix);
                out.push_str("segment ");
                push_clean(out, &segment.trace_segment_id);
                out.push_str(" of ");
                push_clean(out, &segment.service);
                out.push('/');
                push_clean(out, &segment.service_instance);
                out.push('\n');
            }
            for (i, r) in node.span.refs.iter().enumerate() {
                if detail == Detail::Verbose || node.via_ref != Some(i) {
                    out.push_str(&detail_prefix);
                    push_ref(out, trace_id, r);
                }
            }
            push_logs(out, &detail_prefix, node.span);
            for report in reports.iter().filter(|l| {
                l.trace_context.as_ref().is_some_and(|c| {
                    c.trace_segment_id == segment.trace_segment_id && c.span_id == node.span.span_id
                })
            }) {
                out.push_str(&detail_prefix);
                push_report(out, report);
            }
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

    // Records of this trace written in spans the tree does not have (a segment not received).
    for report in reports.iter().filter(|l| {
        l.trace_context.as_ref().is_none_or(|c| {
            !segments.iter().any(|s| {
                s.trace_segment_id == c.trace_segment_id
                    && s.spans.iter().any(|span| span.span_id == c.span_id)
            })
        })
    }) {
        out.push_str("   ");
        push_report(out, report);
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

    if !span.peer.is_empty() {
        if span.span_type == SpanType::Exit as i32 {
            out.push_str(" → ");
            push_clean(out, &span.peer);
        } else if span.span_type == SpanType::Entry as i32 {
            out.push_str(" ← ");
            push_clean(out, &span.peer);
        }
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

/// Appends a `ref …` line: where the span's segment was continued from.
fn push_ref(out: &mut String, trace_id: &str, r: &SegmentReference) {
    out.push_str("ref ");
    match RefType::try_from(r.ref_type) {
        Ok(kind) => out.push_str(kind.as_str_name()),
        Err(_) => {
            let _ = write!(out, "RefType({})", r.ref_type);
        }
    }
    if !r.parent_service.is_empty() || !r.parent_service_instance.is_empty() {
        out.push_str(" from ");
        push_clean(out, &r.parent_service);
        out.push('/');
        push_clean(out, &r.parent_service_instance);
    }
    if !r.parent_endpoint.is_empty() {
        out.push(' ');
        push_clean(out, &r.parent_endpoint);
    }
    out.push_str(" (segment ");
    push_clean(out, &r.parent_trace_segment_id);
    let _ = write!(out, ", span {}", r.parent_span_id);
    if !r.network_address_used_at_peer.is_empty() {
        out.push_str(", address ");
        push_clean(out, &r.network_address_used_at_peer);
    }
    if r.trace_id != trace_id {
        out.push_str(", trace ");
        push_clean(out, &r.trace_id);
    }
    out.push_str(")\n");
}

/// Appends the span's logs, one `log +N ms k=v …` line each, in time order.
fn push_logs(out: &mut String, prefix: &str, span: &SpanObject) {
    let mut logs: Vec<_> = span.logs.iter().collect();
    // Stable: logs stamped alike keep the order they were recorded in.
    logs.sort_by_key(|log| log.time);
    for log in logs {
        out.push_str(prefix);
        let _ = write!(
            out,
            "log +{} ms",
            log.time.saturating_sub(span.start_time).max(0)
        );
        for kv in &log.data {
            out.push(' ');
            push_clean(out, &kv.key);
            out.push('=');
            push_clean(out, &kv.value);
        }
        out.push('\n');
    }
}

/// Appends one reported log record: `report [LEVEL] logger: text`.
fn push_report(out: &mut String, log: &LogData) {
    let tag = |key: &str| {
        log.tags
            .iter()
            .flat_map(|t| &t.data)
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.as_str())
    };
    out.push_str("report [");
    push_clean(out, tag("level").unwrap_or("?"));
    out.push_str("] ");
    if let Some(logger) = tag("logger") {
        push_clean(out, logger);
        out.push_str(": ");
    }
    let text = match log.body.as_ref().and_then(|b| b.content.as_ref()) {
        Some(log_data_body::Content::Text(t)) => t.text.as_str(),
        Some(log_data_body::Content::Json(j)) => j.json.as_str(),
        Some(log_data_body::Content::Yaml(y)) => y.yaml.as_str(),
        None => "",
    };
    push_clean(out, text);
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
    use skytrace_proto::v3::{KeyStringValuePair, Log};

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
        entry.tags = vec![tag("http.method", "GET"), tag("http.status_code", "200")];
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
└─ [frontend] GET:/checkout (Entry, Http) 120 ms http.method=GET http.status_code=200
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
│    ref CrossProcess (segment never-received, span 3)
└─ [mq-consumer] orphan (Local) 1 ms
";
        assert_eq!(rendered, expected, "\n{rendered}");
    }

    fn log(time: i64, pairs: &[(&str, &str)]) -> Log {
        Log {
            time,
            data: pairs.iter().map(|(k, v)| tag(k, v)).collect(),
        }
    }

    /// The frontend continued from a gateway that reports elsewhere; its exit span logged a
    /// transport error (logs out of time order); the entry span has the client's address.
    fn with_details() -> Vec<SegmentObject> {
        let mut segments = two_services();
        let frontend = &mut segments[2];
        let entry = &mut frontend.spans[2];
        entry.peer = "10.0.0.1:5000".into();
        entry.refs = vec![SegmentReference {
            parent_service: "gateway".into(),
            parent_service_instance: "gw-1".into(),
            parent_endpoint: "GET:/shop/checkout".into(),
            network_address_used_at_peer: "frontend:80".into(),
            ..reference(RefType::CrossProcess, "gw-seg", 4)
        }];
        let call = &mut frontend.spans[0];
        call.logs = vec![
            log(
                1_090,
                &[("event", "error"), ("message", "connection reset\nby peer")],
            ),
            log(1_050, &[("event", "retry")]),
        ];
        segments
    }

    #[test]
    fn shows_logs_unseen_refs_and_entry_peers() {
        let rendered = render_trace_tree(&with_details());
        let expected = "\
trace trace-1: 3 segments, 6 spans, 150 ms
└─ [frontend] GET:/checkout (Entry, Http) 120 ms ← 10.0.0.1:5000 http.method=GET http.status_code=200
   │ ref CrossProcess from gateway/gw-1 GET:/shop/checkout (segment gw-seg, span 4, address frontend:80)
   ├─ /api/price (Exit, Http) 80 ms → backend:8080
   │  │ log +40 ms event=retry
   │  │ log +80 ms event=error message=connection reset\\nby peer
   │  └─ [backend] /api/price (Entry, Http) 60 ms
   │     └─ SELECT price (Exit, Database) 40 ms → db:5432 ERROR db.type=sql
   └─ spawn-audit (Local) 5 ms
      └─ [frontend] audit (Local) 50 ms
";
        assert_eq!(rendered, expected, "\n{rendered}");
    }

    #[test]
    fn verbose_shows_every_ref_and_segment() {
        let rendered = render_trace_tree_with(&with_details(), Detail::Verbose);
        let expected = "\
trace trace-1: 3 segments, 6 spans, 150 ms
└─ [frontend] GET:/checkout (Entry, Http) 120 ms ← 10.0.0.1:5000 http.method=GET http.status_code=200
   │ segment seg-front of frontend/i
   │ ref CrossProcess from gateway/gw-1 GET:/shop/checkout (segment gw-seg, span 4, address frontend:80)
   ├─ /api/price (Exit, Http) 80 ms → backend:8080
   │  │ log +40 ms event=retry
   │  │ log +80 ms event=error message=connection reset\\nby peer
   │  └─ [backend] /api/price (Entry, Http) 60 ms
   │     │ segment seg-back of backend/i
   │     │ ref CrossProcess (segment seg-front, span 1)
   │     └─ SELECT price (Exit, Database) 40 ms → db:5432 ERROR db.type=sql
   └─ spawn-audit (Local) 5 ms
      └─ [frontend] audit (Local) 50 ms
           segment seg-audit of frontend/i
           ref CrossThread (segment seg-front, span 2)
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
