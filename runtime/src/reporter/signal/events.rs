//! The instance's own events, for OAP's event view beside its metrics: `Start` once OAP can be
//! reached, `Shutdown` when the reporter shuts down while connected. What the Java agent
//! reports (`EventService/collect`, layer `GENERAL`), with "Rust" for "Java" in the messages.
//!
//! `Start` spans the process's start to the reporter's (so OAP shows how long the service took
//! to come up). It goes right after the instance is introduced, and again after a failed call,
//! [`START_ATTEMPTS`] times at most: an OAP whose event receiver is broken must not keep the
//! segments waiting behind it. Its parameters are empty: the Java agent lists the JVM's
//! arguments there, and a command line can hold secrets.

use std::collections::HashMap;
use std::rc::Rc;

use skytrace_proto::v3::{Event, Source, Type};

use crate::id::random_u64;
use crate::reporter::health::{Health, Signal};
use crate::reporter::transport::{CallError, RefusalKind, Transport};
use crate::reporter::worker::Shared;
use crate::time::now_millis;

/// The layer OAP files an agent's events under.
const LAYER: &str = "GENERAL";

/// How many calls may fail to deliver `Start` before it is given up.
pub(crate) const START_ATTEMPTS: u8 = 3;

#[derive(Debug)]
pub(crate) struct Events {
    /// `Start`, until OAP has it.
    start: Option<Event>,
    /// Failed calls `Start` may still have.
    attempts_left: u8,
    /// `Shutdown` is sent at most once.
    shutdown_sent: bool,
    source: Source,
}

impl Events {
    /// The events of `service`'s `instance`, whose reporter starts now.
    pub(crate) fn new(service: String, instance: String) -> Events {
        let now = now_millis();
        let source = Source {
            service,
            service_instance: instance,
            endpoint: String::new(),
        };
        let start = event(
            &source,
            "Start",
            "Start Rust Application",
            process_start_millis()
                .filter(|&t| t > 0 && t <= now)
                .unwrap_or(now),
            now,
        );
        Events {
            start: Some(start),
            attempts_left: START_ATTEMPTS,
            shutdown_sent: false,
            source,
        }
    }

    /// No event at all: for a reporter with no way to send them (Kafka without a gRPC
    /// backend).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn off(mut self) -> Events {
        self.start = None;
        self.shutdown_sent = true;
        self
    }

    /// Reports `Start` once OAP answers a call, and `Shutdown` at the shutdown while OAP
    /// answers. An OAP without the event receiver gets neither.
    pub(crate) async fn run<T: Transport>(mut self, shared: Rc<Shared<T>>) {
        let mut health = Health::new(Signal::Events, shared.keep_tracing);
        let mut absent = false;
        if !shared.transport.is_answering() {
            // Not before OAP answers: the event would only fail.
            let _ = shared.within_stop(shared.reached.notified(), None).await;
        }
        while let Some(start) = self.start() {
            if shared.deadline().is_some() || !shared.ready(&health).await {
                break;
            }
            let call = shared
                .transport
                .report_events(vec![start], shared.call_timeout());
            let Some(result) = shared.within_deadline(call).await else {
                break;
            };
            match shared.book(&mut health, result) {
                Ok(_) => self.started(),
                Err(CallError::Refused(refusal)) if refusal.kind == RefusalKind::Absent => {
                    absent = true;
                    self.started();
                }
                Err(_) => self.start_failed(),
            }
        }
        shared.stopping().await;
        if !absent && self.shutdown_due(shared.transport.is_answering()) {
            let shutdown = self.take_shutdown();
            let call = shared
                .transport
                .report_events(vec![shutdown], shared.call_timeout());
            if let Some(result) = shared.within_deadline(call).await {
                let _ = shared.book(&mut health, result);
            }
        }
    }

    /// `Start`, while OAP does not have it and it has attempts left.
    pub(crate) fn start(&self) -> Option<Event> {
        self.start.clone().filter(|_| self.attempts_left > 0)
    }

    /// OAP has `Start`.
    pub(crate) fn started(&mut self) {
        self.start = None;
    }

    /// A call with `Start` failed.
    pub(crate) fn start_failed(&mut self) {
        self.attempts_left = self.attempts_left.saturating_sub(1);
    }

    /// Whether `Shutdown` is still to be sent, given whether the reporter is connected (as the
    /// Java agent, it is not sent to a backend that is away).
    pub(crate) fn shutdown_due(&self, connected: bool) -> bool {
        connected && !self.shutdown_sent
    }

    /// `Shutdown`, once.
    pub(crate) fn take_shutdown(&mut self) -> Event {
        self.shutdown_sent = true;
        let now = now_millis();
        event(
            &self.source,
            "Shutdown",
            "Shutting down Rust Application",
            now,
            now,
        )
    }
}

fn event(source: &Source, name: &str, message: &str, start: i64, end: i64) -> Event {
    Event {
        uuid: uuid(),
        source: Some(source.clone()),
        name: name.to_owned(),
        r#type: Type::Normal as i32,
        message: message.to_owned(),
        parameters: HashMap::new(),
        start_time: start,
        end_time: end,
        layer: LAYER.to_owned(),
    }
}

/// A random (version 4) UUID, as the Java agent's `UUID.randomUUID()`: 122 random bits.
fn uuid() -> String {
    let (high, low) = (random_u64(), random_u64());
    // Version 4, variant 10.
    let high = (high & !0xf000) | 0x4000;
    let low = (low & !(0b11 << 62)) | (0b10 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// When this process started, in milliseconds since the Unix epoch: Linux's boot time plus the
/// process's start in clock ticks since boot (100 a second on every architecture Rust's std
/// targets with Linux's default `USER_HZ`). `None` elsewhere, or if `/proc` says otherwise.
#[cfg(target_os = "linux")]
fn process_start_millis() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces and parentheses: count from the last.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 22 of the line is the start time; `after_name` begins with field 3.
    let ticks: i64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    boot.checked_mul(1000)?.checked_add(ticks.checked_mul(10)?)
}

#[cfg(not(target_os = "linux"))]
fn process_start_millis() -> Option<i64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_spans_the_process_start_to_now_and_shutdown_goes_once() {
        let mut events = Events::new("svc".into(), "svc-1".into());
        let start = events.start().unwrap();
        assert_eq!(
            (start.name.as_str(), start.layer.as_str()),
            ("Start", "GENERAL")
        );
        assert_eq!(start.message, "Start Rust Application");
        assert_eq!(start.r#type, Type::Normal as i32);
        let source = start.source.as_ref().unwrap();
        assert_eq!(
            (source.service.as_str(), source.service_instance.as_str()),
            ("svc", "svc-1")
        );
        assert!(0 < start.start_time && start.start_time <= start.end_time);
        // This test process started less than a day ago, and not after the events were made.
        assert!(start.end_time - start.start_time < 86_400_000);
        events.started();
        assert!(events.start().is_none());

        let mut failing = Events::new("svc".into(), "svc-1".into());
        for _ in 0..START_ATTEMPTS {
            assert!(failing.start().is_some());
            failing.start_failed();
        }
        assert!(failing.start().is_none(), "given up");

        assert!(!events.shutdown_due(false));
        assert!(events.shutdown_due(true));
        let shutdown = events.take_shutdown();
        assert_eq!(shutdown.name, "Shutdown");
        assert_eq!(shutdown.message, "Shutting down Rust Application");
        assert_eq!(shutdown.start_time, shutdown.end_time);
        assert_ne!(shutdown.uuid, start.uuid);
        assert!(!events.shutdown_due(true));
    }

    #[test]
    fn uuids_are_random_version_4() {
        let (a, b) = (uuid(), uuid());
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_start_is_read_from_proc() {
        let start = process_start_millis().expect("/proc/self/stat and /proc/stat");
        assert!(start <= now_millis());
    }
}
