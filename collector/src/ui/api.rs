//! The JSON documents the page reads, built from the [`Store`](super::store::Store).
//!
//! Every document is an object; times are milliseconds since the Unix epoch, as agents send
//! them. Pairs (tags, properties, log data) are `[key, value]` arrays, in the order sent.

use std::sync::Arc;

use skytrace_proto::v3::{
    LogData, RefType, SegmentObject, SpanLayer, SpanObject, SpanType, log_data_body,
};

use super::json::{Object, push_f64, push_str};
use super::store::{Inner, Record, Trace};
use crate::tree;

/// Traces listed when the page asks for no number.
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// The trace list's filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TraceQuery {
    /// Only traces this service took part in (exact name); empty: all.
    pub(crate) service: String,
    /// Only traces whose endpoint contains this (any case), or whose id starts with it.
    pub(crate) text: String,
    /// Only traces with a failed span.
    pub(crate) errors: bool,
    /// Only traces at least this long.
    pub(crate) min_ms: i64,
    /// At most this many, the latest first.
    pub(crate) limit: usize,
}

impl TraceQuery {
    fn matches(&self, id: &str, trace: &Trace, text_lower: &str) -> bool {
        let summary = &trace.summary;
        if !self.service.is_empty() && !summary.services.contains(&self.service) {
            return false;
        }
        if self.errors && summary.errors == 0 {
            return false;
        }
        if summary.duration() < self.min_ms {
            return false;
        }
        if text_lower.is_empty() || id.starts_with(self.text.trim()) {
            return true;
        }
        summary
            .root
            .as_ref()
            .is_some_and(|r| r.endpoint.to_lowercase().contains(text_lower))
    }
}

/// `/api/overview`: how much of each kind is kept, and what was dropped.
pub(crate) fn overview(inner: &Inner) -> String {
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.int("version", inner.version)
        .int("keep", inner.keep as u64)
        .int("traces", inner.traces.len() as u64)
        .int("segments", inner.segments_kept() as u64)
        .int("dropped_segments", inner.dropped_segments)
        .int("logs", inner.logs.len() as u64)
        .int("dropped_logs", inner.dropped_logs)
        .int("instances", inner.instances.len() as u64)
        .int("series", inner.series.len() as u64)
        .int("dropped_series", inner.dropped_series)
        .int("events", inner.events.len() as u64)
        .int("rejected", inner.rejected);
    o.end();
    out
}

/// `/api/traces`: the latest traces matching `query`, and every service seen (for the filter).
pub(crate) fn traces(inner: &Inner, query: &TraceQuery) -> String {
    let text_lower = query.text.trim().to_lowercase();
    let mut matched: Vec<(&String, &Trace)> = inner
        .traces
        .iter()
        .filter(|(id, trace)| query.matches(id, trace, &text_lower))
        .collect();
    let key = |t: &Trace| t.summary.start.unwrap_or(t.summary.received);
    matched.sort_unstable_by(|a, b| key(b.1).cmp(&key(a.1)).then_with(|| a.0.cmp(b.0)));
    let mut services: Vec<&str> = inner
        .traces
        .values()
        .flat_map(|t| t.summary.services.iter().map(String::as_str))
        .collect();
    services.sort_unstable();
    services.dedup();

    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.int("version", inner.version)
        .int("total", inner.traces.len() as u64)
        .int("matched", matched.len() as u64)
        .array("services", services, push_str)
        .array(
            "traces",
            matched.iter().take(query.limit),
            |out, (id, trace)| {
                let s = &trace.summary;
                let mut t = Object::new(out);
                t.str("id", id)
                    .str("endpoint", s.root.as_ref().map_or("", |r| &r.endpoint))
                    .str("service", s.root.as_ref().map_or("", |r| &r.service))
                    .array("services", services_root_first(s), |out, s| {
                        push_str(out, s)
                    })
                    .int("start", s.start.unwrap_or(s.received))
                    .int("duration", s.duration())
                    .int("spans", s.spans as u64)
                    .int("segments", trace.segments.len() as u64)
                    .int("errors", s.errors as u64)
                    .int("updated", trace.updated);
                t.end();
            },
        );
    o.end();
    out
}

/// The trace's services, the one of its root first, then in order of arrival.
fn services_root_first(summary: &super::store::Summary) -> Vec<&str> {
    let root = summary.root.as_ref().map(|r| r.service.as_str());
    let mut services: Vec<&str> = root.into_iter().collect();
    services.extend(
        summary
            .services
            .iter()
            .map(String::as_str)
            .filter(|s| Some(*s) != root),
    );
    services
}

/// What `/api/trace` needs, copied out of the store so the document is built unlocked.
pub(crate) struct TraceCopy {
    id: String,
    updated: u64,
    segments: Vec<Arc<SegmentObject>>,
    records: Vec<Record>,
}

/// The trace `id`'s segments and log records, if it is kept.
pub(crate) fn copy_trace(inner: &Inner, id: &str) -> Option<TraceCopy> {
    let trace = inner.traces.get(id)?;
    let records = inner
        .logs
        .iter()
        .filter(|r| {
            r.log
                .trace_context
                .as_ref()
                .is_some_and(|c| c.trace_id == id)
        })
        .cloned()
        .collect();
    Some(TraceCopy {
        id: id.to_owned(),
        updated: trace.updated,
        segments: trace.segments.clone(),
        records,
    })
}

/// `/api/trace?id=…`: every span of the trace in tree order (depth first, children by start
/// time; segments nested under the span their first span's ref names), each with its depth and
/// parent's index, and the log records written in it.
pub(crate) fn trace(copy: &TraceCopy) -> String {
    let segments: Vec<&SegmentObject> = copy.segments.iter().map(|s| &**s).collect();
    let linked = tree::link(&segments);
    let order = depth_first(&linked);
    let mut index = vec![usize::MAX; linked.nodes.len()];
    for (i, (n, _)) in order.iter().enumerate() {
        index[*n] = i;
    }
    let start = linked
        .nodes
        .iter()
        .map(|n| n.span.start_time)
        .min()
        .unwrap_or(0);
    let end = linked
        .nodes
        .iter()
        .map(|n| n.span.end_time)
        .max()
        .unwrap_or(0);
    // In the order the waterfall shows them.
    let mut services: Vec<&str> = Vec::new();
    for (n, _) in &order {
        let service = segments[linked.nodes[*n].segment].service.as_str();
        if !services.contains(&service) {
            services.push(service);
        }
    }
    for segment in &segments {
        if !services.contains(&segment.service.as_str()) {
            services.push(&segment.service);
        }
    }
    let in_span = |record: &Record, segment: &SegmentObject, span: &SpanObject| {
        record.log.trace_context.as_ref().is_some_and(|c| {
            c.trace_segment_id == segment.trace_segment_id && c.span_id == span.span_id
        })
    };

    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.str("id", &copy.id)
        .int("updated", copy.updated)
        .int("start", start)
        .int("end", end)
        .int("duration", end.saturating_sub(start).max(0))
        .int("segments", segments.len() as u64)
        .array("services", services, push_str)
        .int(
            "errors",
            linked.nodes.iter().filter(|n| n.span.is_error).count() as u64,
        );
    o.array("spans", &order, |out, &(n, depth)| {
        let node = &linked.nodes[n];
        let segment = segments[node.segment];
        let span = node.span;
        let mut s = Object::new(out);
        s.int("depth", depth as u64)
            .int(
                "parent",
                node.parent
                    .map_or(-1, |p| i64::try_from(index[p]).unwrap_or(-1)),
            )
            .int("children", linked.children[n].len() as u64)
            .str("service", &segment.service)
            .str("instance", &segment.service_instance)
            .str("segment", &segment.trace_segment_id)
            .bool("first_of_segment", linked.first_of_segment(n))
            .bool("size_limited", segment.is_size_limited)
            .int("span_id", span.span_id)
            .int("parent_span_id", span.parent_span_id)
            .str("name", &span.operation_name)
            .str("kind", &kind(span.span_type))
            .str("layer", &layer(span.span_layer))
            .int("component_id", span.component_id)
            .str("component", component(span.component_id).unwrap_or(""))
            .str("peer", &span.peer)
            .int("start", span.start_time)
            .int("end", span.end_time)
            .bool("error", span.is_error)
            .bool("skip_analysis", span.skip_analysis)
            .pairs(
                "tags",
                span.tags.iter().map(|t| (t.key.as_str(), t.value.as_str())),
            );
        s.array("logs", sorted_logs(span), |out, log| {
            let mut l = Object::new(out);
            l.int("time", log.time).pairs(
                "data",
                log.data
                    .iter()
                    .map(|kv| (kv.key.as_str(), kv.value.as_str())),
            );
            l.end();
        });
        s.array("refs", span.refs.iter().enumerate(), |out, (i, r)| {
            let mut j = Object::new(out);
            j.str("type", &ref_type(r.ref_type))
                .str("trace", &r.trace_id)
                .str("segment", &r.parent_trace_segment_id)
                .int("span", r.parent_span_id)
                .str("service", &r.parent_service)
                .str("instance", &r.parent_service_instance)
                .str("endpoint", &r.parent_endpoint)
                .str("address", &r.network_address_used_at_peer)
                .bool("linked", node.via_ref == Some(i));
            j.end();
        });
        s.array(
            "records",
            copy.records.iter().filter(|r| in_span(r, segment, span)),
            push_record,
        );
        s.end();
    });
    // Records of the trace written in a span not received (its segment was not, or was dropped).
    o.array(
        "records",
        copy.records.iter().filter(|r| {
            !linked
                .nodes
                .iter()
                .any(|n| in_span(r, segments[n.segment], n.span))
        }),
        push_record,
    );
    o.array(
        "empty_segments",
        segments.iter().filter(|s| s.spans.is_empty()),
        |out, s| {
            let mut j = Object::new(out);
            j.str("service", &s.service)
                .str("instance", &s.service_instance)
                .str("segment", &s.trace_segment_id);
            j.end();
        },
    );
    o.end();
    out
}

/// Node indices in tree order with their depth; spans caught in a parent cycle (broken input)
/// are reached from no root and become extra roots, as in the printed trees.
fn depth_first(linked: &tree::Linked<'_>) -> Vec<(usize, usize)> {
    let count = linked.nodes.len();
    let mut visited = vec![false; count];
    let mut order = Vec::with_capacity(count);
    let mut next_extra = 0;
    let mut top = linked.roots.clone();
    loop {
        let mut stack: Vec<(usize, usize)> = top.iter().rev().map(|&n| (n, 0)).collect();
        while let Some((n, depth)) = stack.pop() {
            if visited[n] {
                continue;
            }
            visited[n] = true;
            order.push((n, depth));
            for &c in linked.children[n].iter().rev() {
                if !visited[c] {
                    stack.push((c, depth + 1));
                }
            }
        }
        while next_extra < count && visited[next_extra] {
            next_extra += 1;
        }
        if next_extra == count {
            return order;
        }
        top = vec![next_extra];
    }
}

fn sorted_logs(span: &SpanObject) -> Vec<&skytrace_proto::v3::Log> {
    let mut logs: Vec<_> = span.logs.iter().collect();
    logs.sort_by_key(|l| l.time);
    logs
}

fn kind(value: i32) -> String {
    SpanType::try_from(value).map_or_else(
        |_| format!("SpanType({value})"),
        |k| k.as_str_name().to_owned(),
    )
}

fn layer(value: i32) -> String {
    match SpanLayer::try_from(value) {
        Ok(SpanLayer::Unknown) => String::new(),
        Ok(layer) => layer.as_str_name().to_owned(),
        Err(_) => format!("SpanLayer({value})"),
    }
}

fn ref_type(value: i32) -> String {
    RefType::try_from(value).map_or_else(
        |_| format!("RefType({value})"),
        |k| k.as_str_name().to_owned(),
    )
}

/// Names of the component ids skytrace's integrations and the common agents use, as OAP's
/// `component-libraries.yml` spells them; others are shown by number.
pub(crate) fn component(id: i32) -> Option<&'static str> {
    Some(match id {
        1 => "Tomcat",
        2 => "HttpClient",
        5 => "Mysql",
        7 => "Redis",
        9 => "MongoDB",
        22 => "PostgreSQL",
        23 => "gRPC",
        27 => "Kafka",
        40 => "kafka-producer",
        41 => "kafka-consumer",
        49 => "http",
        50 => "rpc",
        52 => "rabbitmq-producer",
        53 => "rabbitmq-consumer",
        132 => "NATS",
        11000 => "Rust",
        _ => return None,
    })
}

fn tag<'a>(log: &'a LogData, key: &str) -> &'a str {
    log.tags
        .iter()
        .flat_map(|t| &t.data)
        .find(|kv| kv.key == key)
        .map_or("", |kv| kv.value.as_str())
}

fn body(log: &LogData) -> (&str, &str) {
    match log.body.as_ref().and_then(|b| b.content.as_ref()) {
        Some(log_data_body::Content::Text(t)) => ("TEXT", t.text.as_str()),
        Some(log_data_body::Content::Json(j)) => ("JSON", j.json.as_str()),
        Some(log_data_body::Content::Yaml(y)) => ("YAML", y.yaml.as_str()),
        None => ("", ""),
    }
}

fn push_record(out: &mut String, record: &Record) {
    let log = &record.log;
    let (kind, text) = body(log);
    let context = log.trace_context.as_ref();
    let mut o = Object::new(out);
    o.int(
        "time",
        if log.timestamp > 0 {
            log.timestamp
        } else {
            record.received
        },
    )
    .str("service", &log.service)
    .str("instance", &log.service_instance)
    .str("endpoint", &log.endpoint)
    .str("level", tag(log, "level"))
    .str("logger", tag(log, "logger"))
    .str("type", kind)
    .str("text", text)
    .str("trace", context.map_or("", |c| &c.trace_id))
    .str("segment", context.map_or("", |c| &c.trace_segment_id))
    .int("span", context.map_or(-1, |c| c.span_id))
    .pairs(
        "tags",
        log.tags
            .iter()
            .flat_map(|t| &t.data)
            .map(|kv| (kv.key.as_str(), kv.value.as_str())),
    );
    o.end();
}

/// The log list's filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LogQuery {
    pub(crate) service: String,
    /// Text the record's body, logger or level contains (any case).
    pub(crate) text: String,
    pub(crate) limit: usize,
}

/// `/api/logs`: the latest log records matching `query`, newest first.
pub(crate) fn logs(inner: &Inner, query: &LogQuery) -> String {
    let text = query.text.trim().to_lowercase();
    let matches = |r: &&Record| {
        let log = &r.log;
        (query.service.is_empty() || log.service == query.service)
            && (text.is_empty()
                || body(log).1.to_lowercase().contains(&text)
                || tag(log, "logger").to_lowercase().contains(&text)
                || tag(log, "level").to_lowercase() == text)
    };
    let matched: Vec<&Record> = inner.logs.iter().rev().filter(matches).collect();
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.int("version", inner.version)
        .int("total", inner.logs.len() as u64)
        .int("matched", matched.len() as u64)
        .int("dropped", inner.dropped_logs)
        .array("logs", matched.into_iter().take(query.limit), |out, r| {
            push_record(out, r)
        });
    o.end();
    out
}

/// `/api/instances`: every instance seen (by properties, keep-alives, segments, logs or
/// meters), by service then instance.
pub(crate) fn instances(inner: &Inner) -> String {
    let mut list: Vec<_> = inner.instances.values().collect();
    list.sort_unstable_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.int("version", inner.version)
        .int("rejected", inner.rejected)
        .array("instances", list, |out, i| {
            let fetches = inner.fetches.get(&i.service);
            let mut j = Object::new(out);
            j.str("service", &i.service)
                .str("instance", &i.instance)
                .str("layer", &i.layer)
                .pairs(
                    "properties",
                    i.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .int("properties_at", i.properties_at.unwrap_or(0))
                .int("first_seen", i.first_seen)
                .int("last_seen", i.last_seen)
                .int("last_keep_alive", i.last_keep_alive.unwrap_or(0))
                .int("keep_alives", i.keep_alives)
                .int("segments", i.segments)
                .int("logs", i.logs)
                .int("meter_reports", i.meter_reports)
                .int("config_fetches", fetches.map_or(0, |f| f.count))
                .int("last_config_fetch", fetches.map_or(0, |f| f.last))
                .str("config_uuid", fetches.map_or("", |f| &f.uuid));
            j.end();
        });
    o.end();
    out
}

/// `/api/meters`: every series with its points (oldest first) and, for a histogram, its last
/// buckets; by service, instance, name and labels.
pub(crate) fn meters(inner: &Inner) -> String {
    let mut list: Vec<_> = inner.series.iter().collect();
    list.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.int("version", inner.version)
        .int("dropped", inner.dropped_series)
        .array(
            "series",
            list,
            |out, ((service, instance, name, labels), series)| {
                let mut j = Object::new(out);
                j.str("service", service)
                    .str("instance", instance)
                    .str("name", name)
                    .pairs(
                        "labels",
                        labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    )
                    .str(
                        "kind",
                        if series.histogram {
                            "histogram"
                        } else {
                            "value"
                        },
                    )
                    .array("points", &series.points, |out, (t, v)| {
                        out.push('[');
                        out.push_str(&t.to_string());
                        out.push(',');
                        push_f64(out, *v);
                        out.push(']');
                    })
                    .array("buckets", &series.buckets, |out, (bucket, count, neg)| {
                        out.push('[');
                        if *neg {
                            out.push_str("null");
                        } else {
                            push_f64(out, *bucket);
                        }
                        out.push(',');
                        out.push_str(&count.to_string());
                        out.push(']');
                    });
                j.end();
            },
        );
    o.end();
    out
}

/// `/api/events`: the kept service events, newest first.
pub(crate) fn events(inner: &Inner) -> String {
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.int("version", inner.version).array(
        "events",
        inner.events.iter().rev(),
        |out, (e, received)| {
            let source = e.source.clone().unwrap_or_default();
            let mut parameters: Vec<_> = e.parameters.iter().collect();
            parameters.sort();
            let mut j = Object::new(out);
            j.str("uuid", &e.uuid)
                .str("service", &source.service)
                .str("instance", &source.service_instance)
                .str("endpoint", &source.endpoint)
                .str("name", &e.name)
                .str(
                    "type",
                    if e.r#type == skytrace_proto::v3::Type::Error as i32 {
                        "Error"
                    } else {
                        "Normal"
                    },
                )
                .str("message", &e.message)
                .pairs(
                    "parameters",
                    parameters
                        .into_iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .int("start", e.start_time)
                .int("end", e.end_time)
                .str("layer", &e.layer)
                .int("received", *received);
            j.end();
        },
    );
    o.end();
    out
}
