//! Meter reports made to fit: a period's `MeterDataCollection` split into messages that each
//! fit the transport's limit, and the bounded buffer they wait in.
//!
//! OAP's `collectBatch` takes each `MeterDataCollection` on its own, its first element carrying
//! the service, instance and time: a report cut in parts is several collections, each with its
//! own first element. A single meter over the limit (a histogram of thousands of buckets) is
//! dropped alone and counted. The buffer holds at most `max_reports` messages and
//! [`MAX_BUFFER_BYTES`] bytes; beyond either, the oldest go, counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use skytrace_proto::v3::{MeterData, MeterDataCollection};

/// Most bytes of reports held while they cannot be sent (at least one message is always kept).
pub(crate) const MAX_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// The bytes a `repeated` message field adds around a message of `len` bytes.
fn framed(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// `report` as collections of at most `max_bytes` each, and how many meters were too large
/// alone to go in any.
pub(crate) fn split(
    report: MeterDataCollection,
    max_bytes: usize,
) -> (Vec<MeterDataCollection>, usize) {
    let mut data = report.meter_data.into_iter();
    let Some(mut first) = data.next() else {
        return (Vec::new(), 0);
    };
    let (service, instance, timestamp) = (
        std::mem::take(&mut first.service),
        std::mem::take(&mut first.service_instance),
        first.timestamp,
    );
    first.timestamp = 0;
    let head = |mut meter: MeterData| {
        meter.service.clone_from(&service);
        meter.service_instance.clone_from(&instance);
        meter.timestamp = timestamp;
        meter
    };
    // What the service, instance and time add to the meter opening a part (fields 3 to 5, one
    // byte of tag each).
    let string_field = |s: &str| {
        if s.is_empty() {
            0
        } else {
            1 + prost::encoding::encoded_len_varint(s.len() as u64) + s.len()
        }
    };
    let head_len = string_field(&service)
        + string_field(&instance)
        + if timestamp == 0 {
            0
        } else {
            1 + prost::encoding::encoded_len_varint(timestamp as u64)
        };
    let mut parts = Vec::new();
    let mut dropped = 0;
    let mut current: Vec<MeterData> = Vec::new();
    let mut current_len = 0;
    for meter in std::iter::once(first).chain(data) {
        // A meter opening a part carries the service, instance and time.
        let bare = meter.encoded_len();
        let opening = framed(bare + head_len);
        let len = if current.is_empty() {
            opening
        } else {
            framed(bare)
        };
        if !current.is_empty() && current_len + len > max_bytes {
            parts.push(MeterDataCollection {
                meter_data: std::mem::take(&mut current),
            });
            current_len = 0;
        }
        if current.is_empty() {
            if opening > max_bytes {
                dropped += 1;
                continue;
            }
            current.push(head(meter));
            current_len = opening;
        } else {
            current.push(meter);
            current_len += len;
        }
    }
    if !current.is_empty() {
        parts.push(MeterDataCollection {
            meter_data: current,
        });
    }
    (parts, dropped)
}

/// Reports waiting to be sent, bounded in number and bytes.
#[derive(Debug)]
pub(crate) struct ReportBuffer {
    reports: VecDeque<(MeterDataCollection, usize)>,
    bytes: usize,
    max_reports: usize,
    max_bytes: usize,
    /// Reports dropped (the buffer full, too large, or left at shutdown).
    dropped: Arc<AtomicU64>,
}

impl ReportBuffer {
    pub(crate) fn new(max_reports: usize, dropped: Arc<AtomicU64>) -> ReportBuffer {
        ReportBuffer {
            reports: VecDeque::new(),
            bytes: 0,
            max_reports: max_reports.max(1),
            max_bytes: MAX_BUFFER_BYTES,
            dropped,
        }
    }

    /// Adds `reports` after those waiting, dropping the oldest beyond the bounds.
    pub(crate) fn push(&mut self, reports: Vec<MeterDataCollection>) {
        for report in reports {
            let len = report.encoded_len();
            self.bytes += len;
            self.reports.push_back((report, len));
        }
        self.trim();
    }

    /// Puts back reports whose call failed, before those collected since.
    pub(crate) fn restore(&mut self, reports: Vec<MeterDataCollection>) {
        for report in reports.into_iter().rev() {
            let len = report.encoded_len();
            self.bytes += len;
            self.reports.push_front((report, len));
        }
        self.trim();
    }

    /// Everything waiting, to send in one call.
    pub(crate) fn take(&mut self) -> Vec<MeterDataCollection> {
        self.bytes = 0;
        self.reports.drain(..).map(|(report, _)| report).collect()
    }

    /// Counts `n` reports as dropped.
    pub(crate) fn count_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Drops everything waiting, counted.
    pub(crate) fn drop_all(&mut self) {
        let n = self.take().len();
        self.count_dropped(n);
    }

    fn trim(&mut self) {
        while self.reports.len() > 1
            && (self.reports.len() > self.max_reports || self.bytes > self.max_bytes)
        {
            if let Some((_, len)) = self.reports.pop_front() {
                self.bytes -= len;
                self.count_dropped(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use skytrace_proto::v3::meter_data::Metric;
    use skytrace_proto::v3::{Label, MeterSingleValue};

    use super::*;

    fn meter(name: &str, label_bytes: usize) -> MeterData {
        MeterData {
            metric: Some(Metric::SingleValue(MeterSingleValue {
                name: name.into(),
                labels: vec![Label {
                    name: "l".into(),
                    value: "v".repeat(label_bytes),
                }],
                value: 1.0,
            })),
            ..Default::default()
        }
    }

    fn report(meters: Vec<MeterData>) -> MeterDataCollection {
        let mut meters = meters;
        meters[0].service = "svc".into();
        meters[0].service_instance = "inst".into();
        meters[0].timestamp = 42;
        MeterDataCollection { meter_data: meters }
    }

    #[test]
    fn a_report_over_the_limit_is_cut_into_parts_that_fit_each_with_its_head() {
        let meters: Vec<_> = (0..500).map(|i| meter(&format!("m{i}"), 2_000)).collect();
        let whole = report(meters);
        assert!(whole.encoded_len() > 900_000);
        let (parts, dropped) = split(whole, 100_000);
        assert_eq!(dropped, 0);
        assert!(parts.len() >= 10, "{}", parts.len());
        let mut names = Vec::new();
        for part in &parts {
            assert!(part.encoded_len() <= 100_000, "{}", part.encoded_len());
            let first = &part.meter_data[0];
            assert_eq!(
                (
                    first.service.as_str(),
                    first.service_instance.as_str(),
                    first.timestamp
                ),
                ("svc", "inst", 42)
            );
            assert!(part.meter_data[1..].iter().all(|m| m.service.is_empty()));
            for m in &part.meter_data {
                match &m.metric {
                    Some(Metric::SingleValue(v)) => names.push(v.name.clone()),
                    _ => unreachable!(),
                }
            }
        }
        let expected: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
        assert_eq!(names, expected, "every meter once, in order");
    }

    #[test]
    fn a_meter_too_large_alone_is_dropped_and_counted() {
        let (parts, dropped) = split(report(vec![meter("big", 5_000), meter("small", 1)]), 1_000);
        assert_eq!(dropped, 1);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].meter_data.len(), 1);
        assert_eq!(parts[0].meter_data[0].service, "svc", "the head moves on");
        let (small, none) = split(report(vec![meter("a", 1), meter("b", 1)]), 1_000);
        assert_eq!((small.len(), none), (1, 0));
        assert_eq!(small[0].meter_data.len(), 2);
    }

    #[test]
    fn the_buffer_is_bounded_in_reports_and_bytes() {
        let dropped = Arc::new(AtomicU64::new(0));
        let mut buffer = ReportBuffer::new(3, Arc::clone(&dropped));
        for i in 0..5 {
            buffer.push(vec![report(vec![meter(&format!("m{i}"), 1)])]);
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        assert_eq!(buffer.take().len(), 3);
        let mut big = ReportBuffer::new(1_000, Arc::clone(&dropped));
        big.max_bytes = 10_000;
        for i in 0..10 {
            big.push(vec![report(vec![meter(&format!("m{i}"), 3_000)])]);
        }
        assert!(
            big.bytes <= 10_000 && big.reports.len() == 3,
            "{}",
            big.reports.len()
        );
        assert_eq!(dropped.load(Ordering::Relaxed), 9);
        // A failed call's reports go back in front, within the bounds.
        let back = big.take();
        big.push(vec![report(vec![meter("new", 3_000)])]);
        big.restore(back);
        assert_eq!(big.reports.len(), 3);
        assert_eq!(dropped.load(Ordering::Relaxed), 10);
    }
}
