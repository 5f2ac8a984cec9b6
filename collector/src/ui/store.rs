//! What the web view can show: a bounded window of what the collector received, indexed by trace.
//!
//! Fed synchronously by the gRPC handlers (so nothing is missed however fast agents send), read by
//! the HTTP handlers. Every part has a bound: the last `keep` segments and `keep` log records
//! (older ones dropped and counted), at most [`MAX_INSTANCES`] instances, [`MAX_SERIES`] meter
//! series of [`MAX_POINTS`] points, and the last [`MAX_EVENTS`] events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use skytrace_proto::v3::meter_data::Metric;
use skytrace_proto::v3::{
    Event as ServiceEvent, InstancePingPkg, InstanceProperties, LogData, MeterData, SegmentObject,
};
use tokio::sync::watch;

use crate::Event;

/// Instances listed; past it the one seen longest ago is forgotten.
pub(crate) const MAX_INSTANCES: usize = 1_000;
/// Meter series kept (one per service, instance, name and labels); new ones past it are dropped
/// and counted.
pub(crate) const MAX_SERIES: usize = 2_000;
/// Points kept per meter series (at the usual 20 s period, 100 minutes).
pub(crate) const MAX_POINTS: usize = 300;
/// Service events kept.
pub(crate) const MAX_EVENTS: usize = 1_000;
/// Services whose configuration fetches are counted.
const MAX_FETCHING_SERVICES: usize = 1_000;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The web view's data, shared by the gRPC handlers (writers) and the HTTP server (readers).
pub(crate) struct Store {
    inner: Mutex<Inner>,
    /// The version after each change, for the page's long polls.
    changes: watch::Sender<u64>,
}

impl Store {
    pub(crate) fn new(keep: usize) -> Store {
        Store {
            inner: Mutex::new(Inner::new(keep.max(1))),
            changes: watch::Sender::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while locked leaves the data consistent enough to show.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Receives a new version after every change.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Takes in one thing received.
    pub(crate) fn observe(&self, event: &Event) {
        self.observe_at(event, now_millis());
    }

    pub(crate) fn observe_at(&self, event: &Event, now: i64) {
        let version = {
            let mut inner = self.lock();
            match event {
                Event::Segment(segment) => inner.push_segment(Arc::new(segment.clone()), now),
                Event::InstanceProperties(p) => inner.properties(p, now),
                Event::Ping(p) => inner.ping(p, now),
                Event::Log(log) => inner.push_log(log, now),
                Event::Meters(meters) => inner.meters(meters, now),
                Event::ConfigurationRequest(r) => inner.fetched(&r.service, &r.uuid, now),
                Event::ServiceEvent(e) => inner.push_event(e, now),
                Event::Rejected { .. } => inner.rejected += 1,
                // Profiles are printed by the binary, not shown in the web view (yet).
                Event::ProfileReport(_) | Event::ProfileTaskFinish(_) | Event::PprofReport(_) => {}
            }
            inner.version += 1;
            inner.version
        };
        self.changes.send_replace(version);
    }
}

/// The data, read by the HTTP handlers under [`Store::lock`].
pub(crate) struct Inner {
    pub(crate) keep: usize,
    /// Bumped on every change.
    pub(crate) version: u64,
    /// Every kept segment, in arrival order (the oldest is dropped first).
    segments: VecDeque<Arc<SegmentObject>>,
    pub(crate) traces: HashMap<String, Trace>,
    pub(crate) dropped_segments: u64,
    /// The last `keep` log records, in arrival order.
    pub(crate) logs: VecDeque<Record>,
    pub(crate) dropped_logs: u64,
    pub(crate) instances: HashMap<(String, String), Instance>,
    /// Configuration fetches per service (the request names no instance).
    pub(crate) fetches: HashMap<String, Fetches>,
    pub(crate) series: HashMap<SeriesKey, Series>,
    pub(crate) dropped_series: u64,
    pub(crate) events: VecDeque<(Arc<ServiceEvent>, i64)>,
    pub(crate) rejected: u64,
}

/// One kept trace: its segments and what the trace list shows of it.
pub(crate) struct Trace {
    pub(crate) segments: Vec<Arc<SegmentObject>>,
    pub(crate) summary: Summary,
    /// The store's version when it last changed.
    pub(crate) updated: u64,
}

/// A trace as the list shows it, kept up to date as its segments arrive and leave.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Summary {
    /// In order of first appearance.
    pub(crate) services: Vec<String>,
    /// The entry of the trace: the first span of the earliest segment continued from nowhere
    /// (else of the earliest segment).
    pub(crate) root: Option<Root>,
    pub(crate) start: Option<i64>,
    pub(crate) end: Option<i64>,
    pub(crate) spans: usize,
    pub(crate) errors: usize,
    /// When its first segment still kept arrived.
    pub(crate) received: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Root {
    /// Continued from another segment (so a worse candidate for the trace's root).
    pub(crate) has_refs: bool,
    pub(crate) start: i64,
    pub(crate) endpoint: String,
    pub(crate) service: String,
}

impl Summary {
    fn add(&mut self, segment: &SegmentObject) {
        if !self.services.contains(&segment.service) {
            self.services.push(segment.service.clone());
        }
        for span in &segment.spans {
            self.start = Some(
                self.start
                    .map_or(span.start_time, |s| s.min(span.start_time)),
            );
            self.end = Some(self.end.map_or(span.end_time, |e| e.max(span.end_time)));
            self.spans += 1;
            self.errors += usize::from(span.is_error);
        }
        // The segment's first span: its entry (or what stands for it).
        let Some(first) = segment
            .spans
            .iter()
            .find(|s| s.parent_span_id < 0)
            .or(segment.spans.first())
        else {
            return;
        };
        let candidate = Root {
            has_refs: !first.refs.is_empty(),
            start: first.start_time,
            endpoint: first.operation_name.clone(),
            service: segment.service.clone(),
        };
        let better = match &self.root {
            None => true,
            Some(root) => (candidate.has_refs, candidate.start) < (root.has_refs, root.start),
        };
        if better {
            self.root = Some(candidate);
        }
    }

    /// Duration in milliseconds, first start to last end.
    pub(crate) fn duration(&self) -> i64 {
        match (self.start, self.end) {
            (Some(start), Some(end)) => end.saturating_sub(start).max(0),
            _ => 0,
        }
    }
}

/// A log record as received, with when.
#[derive(Clone)]
pub(crate) struct Record {
    pub(crate) log: Arc<LogData>,
    pub(crate) received: i64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Instance {
    pub(crate) service: String,
    pub(crate) instance: String,
    pub(crate) layer: String,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) properties_at: Option<i64>,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) last_keep_alive: Option<i64>,
    pub(crate) keep_alives: u64,
    pub(crate) segments: u64,
    pub(crate) logs: u64,
    pub(crate) meter_reports: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Fetches {
    pub(crate) count: u64,
    pub(crate) last: i64,
    pub(crate) uuid: String,
}

/// A meter series: service, instance, name and labels (sorted).
pub(crate) type SeriesKey = (String, String, String, Vec<(String, String)>);

#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    pub(crate) histogram: bool,
    /// (time, value); for a histogram, the count of all its buckets.
    pub(crate) points: VecDeque<(i64, f64)>,
    /// A histogram's last buckets: (lower bound, count, is negative infinity).
    pub(crate) buckets: Vec<(f64, i64, bool)>,
}

impl Inner {
    fn new(keep: usize) -> Inner {
        Inner {
            keep,
            version: 0,
            segments: VecDeque::new(),
            traces: HashMap::new(),
            dropped_segments: 0,
            logs: VecDeque::new(),
            dropped_logs: 0,
            instances: HashMap::new(),
            fetches: HashMap::new(),
            series: HashMap::new(),
            dropped_series: 0,
            events: VecDeque::new(),
            rejected: 0,
        }
    }

    pub(crate) fn segments_kept(&self) -> usize {
        self.segments.len()
    }

    fn push_segment(&mut self, segment: Arc<SegmentObject>, now: i64) {
        while self.segments.len() >= self.keep {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            self.dropped_segments += 1;
            self.forget(&old);
        }
        let version = self.version + 1;
        let trace = self
            .traces
            .entry(segment.trace_id.clone())
            .or_insert_with(|| Trace {
                segments: Vec::new(),
                summary: Summary {
                    received: now,
                    ..Summary::default()
                },
                updated: version,
            });
        trace.summary.add(&segment);
        trace.segments.push(Arc::clone(&segment));
        trace.updated = version;
        self.instance(&segment.service, &segment.service_instance, now)
            .segments += 1;
        self.segments.push_back(segment);
    }

    /// Takes a dropped segment out of its trace (the trace goes with its last segment).
    fn forget(&mut self, old: &Arc<SegmentObject>) {
        let version = self.version + 1;
        let Some(trace) = self.traces.get_mut(&old.trace_id) else {
            return;
        };
        trace.segments.retain(|s| !Arc::ptr_eq(s, old));
        if trace.segments.is_empty() {
            self.traces.remove(&old.trace_id);
            return;
        }
        let received = trace.summary.received;
        trace.summary = Summary {
            received,
            ..Summary::default()
        };
        for segment in &trace.segments {
            trace.summary.add(segment);
        }
        trace.updated = version;
    }

    /// The instance's entry, made if new (forgetting the one seen longest ago when full).
    fn instance(&mut self, service: &str, instance: &str, now: i64) -> &mut Instance {
        let key = (service.to_owned(), instance.to_owned());
        if !self.instances.contains_key(&key) && self.instances.len() >= MAX_INSTANCES {
            let oldest = self
                .instances
                .iter()
                .min_by_key(|(_, i)| i.last_seen)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.instances.remove(&oldest);
            }
        }
        let entry = self.instances.entry(key).or_insert_with(|| Instance {
            service: service.to_owned(),
            instance: instance.to_owned(),
            first_seen: now,
            ..Instance::default()
        });
        entry.last_seen = now;
        entry
    }

    fn properties(&mut self, p: &InstanceProperties, now: i64) {
        let entry = self.instance(&p.service, &p.service_instance, now);
        entry.properties = p
            .properties
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        entry.properties_at = Some(now);
        if !p.layer.is_empty() {
            entry.layer = p.layer.clone();
        }
    }

    fn ping(&mut self, p: &InstancePingPkg, now: i64) {
        let entry = self.instance(&p.service, &p.service_instance, now);
        entry.last_keep_alive = Some(now);
        entry.keep_alives += 1;
        if !p.layer.is_empty() {
            entry.layer = p.layer.clone();
        }
    }

    fn push_log(&mut self, log: &LogData, now: i64) {
        while self.logs.len() >= self.keep {
            self.logs.pop_front();
            self.dropped_logs += 1;
        }
        self.instance(&log.service, &log.service_instance, now).logs += 1;
        self.logs.push_back(Record {
            log: Arc::new(log.clone()),
            received: now,
        });
    }

    fn fetched(&mut self, service: &str, uuid: &str, now: i64) {
        if !self.fetches.contains_key(service) && self.fetches.len() >= MAX_FETCHING_SERVICES {
            return;
        }
        let entry = self.fetches.entry(service.to_owned()).or_default();
        entry.count += 1;
        entry.last = now;
        uuid.clone_into(&mut entry.uuid);
    }

    fn push_event(&mut self, event: &ServiceEvent, now: i64) {
        while self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back((Arc::new(event.clone()), now));
    }

    /// One collection of meter values. Only the first element of a stream usually says its
    /// service, instance and time: later ones inherit them.
    fn meters(&mut self, meters: &[MeterData], now: i64) {
        let (mut service, mut instance, mut time) = (String::new(), String::new(), now);
        let mut instances_seen: Vec<(String, String)> = Vec::new();
        for data in meters {
            if !data.service.is_empty() {
                data.service.clone_into(&mut service);
            }
            if !data.service_instance.is_empty() {
                data.service_instance.clone_into(&mut instance);
            }
            if data.timestamp > 0 {
                time = data.timestamp;
            }
            if !instances_seen
                .iter()
                .any(|(s, i)| *s == service && *i == instance)
            {
                instances_seen.push((service.clone(), instance.clone()));
            }
            let (name, labels, histogram) = match &data.metric {
                Some(Metric::SingleValue(v)) => (&v.name, &v.labels, false),
                Some(Metric::Histogram(h)) => (&h.name, &h.labels, true),
                None => continue,
            };
            let mut labels: Vec<(String, String)> = labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            labels.sort();
            let key = (service.clone(), instance.clone(), name.clone(), labels);
            if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES {
                self.dropped_series += 1;
                continue;
            }
            let series = self.series.entry(key).or_default();
            series.histogram = histogram;
            let value = match &data.metric {
                Some(Metric::SingleValue(v)) => v.value,
                Some(Metric::Histogram(h)) => {
                    series.buckets = h
                        .values
                        .iter()
                        .map(|b| (b.bucket, b.count, b.is_negative_infinity))
                        .collect();
                    h.values.iter().map(|b| b.count as f64).sum()
                }
                None => continue,
            };
            if series.points.len() >= MAX_POINTS {
                series.points.pop_front();
            }
            series.points.push_back((time, value));
        }
        for (service, instance) in instances_seen {
            self.instance(&service, &instance, now).meter_reports += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytrace_proto::v3::{
        Label, MeterBucketValue, MeterHistogram, MeterSingleValue, RefType, SegmentReference,
        SpanObject,
    };

    pub(crate) fn span(id: i32, parent: i32, start: i64, end: i64, name: &str) -> SpanObject {
        SpanObject {
            span_id: id,
            parent_span_id: parent,
            start_time: start,
            end_time: end,
            operation_name: name.into(),
            ..Default::default()
        }
    }

    pub(crate) fn segment(
        trace: &str,
        id: &str,
        service: &str,
        spans: Vec<SpanObject>,
    ) -> SegmentObject {
        SegmentObject {
            trace_id: trace.into(),
            trace_segment_id: id.into(),
            service: service.into(),
            service_instance: format!("{service}-1"),
            spans,
            is_size_limited: false,
        }
    }

    #[test]
    fn summary_follows_segments_in_any_order() {
        let store = Store::new(100);
        let mut callee = span(0, -1, 1_010, 1_050, "GET:/users/{id}");
        callee.is_error = true;
        callee.refs = vec![SegmentReference {
            ref_type: RefType::CrossProcess as i32,
            parent_trace_segment_id: "a".into(),
            ..Default::default()
        }];
        // The callee's segment arrives first, as it often does.
        store.observe_at(&Event::Segment(segment("t", "b", "users", vec![callee])), 5);
        store.observe_at(
            &Event::Segment(segment(
                "t",
                "a",
                "frontend",
                vec![
                    span(1, 0, 1_005, 1_060, "GET:/users"),
                    span(0, -1, 1_000, 1_070, "GET:/checkout"),
                ],
            )),
            6,
        );
        let inner = store.lock();
        let summary = &inner.traces["t"].summary;
        assert_eq!(summary.services, ["users", "frontend"]);
        assert_eq!(summary.root.as_ref().unwrap().endpoint, "GET:/checkout");
        assert_eq!(
            (summary.start, summary.end, summary.duration()),
            (Some(1_000), Some(1_070), 70)
        );
        assert_eq!((summary.spans, summary.errors, summary.received), (3, 1, 5));
        assert_eq!(inner.version, 2);
        assert_eq!(
            inner.instances[&("users".into(), "users-1".into())].segments,
            1
        );
    }

    #[test]
    fn keeps_the_last_segments_and_logs() {
        let store = Store::new(2);
        for (trace, id) in [("t1", "a"), ("t2", "b"), ("t1", "c"), ("t3", "d")] {
            let spans = vec![span(0, -1, 10, 20, id)];
            store.observe_at(&Event::Segment(segment(trace, id, "svc", spans)), 1);
        }
        for text in ["x", "y", "z"] {
            let log = LogData {
                endpoint: text.into(),
                ..Default::default()
            };
            store.observe_at(&Event::Log(log), 1);
        }
        let inner = store.lock();
        assert_eq!(inner.segments_kept(), 2);
        assert_eq!(inner.dropped_segments, 2);
        // t2 went with its only segment; t1 lost "a" and is summarised from "c" alone.
        assert!(!inner.traces.contains_key("t2"));
        assert_eq!(inner.traces["t1"].segments.len(), 1);
        assert_eq!(
            inner.traces["t1"].summary.root.as_ref().unwrap().endpoint,
            "c"
        );
        assert_eq!(inner.traces.len(), 2);
        assert_eq!(inner.logs.len(), 2);
        assert_eq!(inner.dropped_logs, 1);
        assert_eq!(inner.logs[0].log.endpoint, "y");
    }

    #[test]
    fn instances_and_meters_are_bounded() {
        let store = Store::new(10);
        for i in 0..MAX_INSTANCES + 5 {
            let ping = InstancePingPkg {
                service: "svc".into(),
                service_instance: format!("i{i}"),
                layer: String::new(),
            };
            store.observe_at(&Event::Ping(ping), i as i64);
        }
        let single = |instance: &str, name: &str, value: f64, time: i64| MeterData {
            metric: Some(Metric::SingleValue(MeterSingleValue {
                name: name.into(),
                labels: vec![Label {
                    name: "k".into(),
                    value: "v".into(),
                }],
                value,
            })),
            service: if instance.is_empty() {
                String::new()
            } else {
                "svc".into()
            },
            service_instance: instance.into(),
            timestamp: time,
        };
        for n in 0..MAX_POINTS + 3 {
            let t = 1_000 + n as i64;
            let histogram = MeterData {
                metric: Some(Metric::Histogram(MeterHistogram {
                    name: "latency".into(),
                    labels: vec![],
                    values: vec![
                        MeterBucketValue {
                            bucket: 0.0,
                            count: 2,
                            is_negative_infinity: false,
                        },
                        MeterBucketValue {
                            bucket: 10.0,
                            count: 3,
                            is_negative_infinity: false,
                        },
                    ],
                })),
                ..Default::default()
            };
            // Only the first element names the instance and time.
            store.observe_at(
                &Event::Meters(vec![single("i9", "cpu", n as f64, t), histogram]),
                t,
            );
        }
        for n in 0..MAX_SERIES + 1 {
            store.observe_at(
                &Event::Meters(vec![single("i9", &format!("m{n}"), 1.0, 5)]),
                5,
            );
        }
        let inner = store.lock();
        assert_eq!(inner.instances.len(), MAX_INSTANCES);
        assert!(
            !inner.instances.contains_key(&("svc".into(), "i0".into())),
            "the oldest went"
        );
        let key = |name: &str, labels: Vec<(String, String)>| {
            ("svc".to_owned(), "i9".to_owned(), name.to_owned(), labels)
        };
        let cpu = &inner.series[&key("cpu", vec![("k".into(), "v".into())])];
        assert_eq!(cpu.points.len(), MAX_POINTS);
        assert_eq!(
            cpu.points.back(),
            Some(&(1_000 + MAX_POINTS as i64 + 2, (MAX_POINTS + 2) as f64))
        );
        let latency = &inner.series[&key("latency", vec![])];
        assert!(latency.histogram);
        assert_eq!(latency.points.back().unwrap().1, 5.0);
        assert_eq!(latency.buckets.len(), 2);
        assert_eq!(inner.series.len(), MAX_SERIES);
        assert_eq!(inner.dropped_series, 3);
    }
}
