//! One CPU recording: a sampler session, drained into an [`Aggregate`], turned into a pprof
//! once stopped. Used by both kinds of task.

use std::time::{Duration, SystemTime};

use skytrace_proto::pprof::Profile;
use skytrace_sampler::{DEFAULT_PERIOD, Session, Stats, Symbolizer};

use super::aggregate::Aggregate;
use super::pprof::{self, Keep};

pub(crate) struct Recording {
    session: Session,
    samples: Aggregate,
}

/// A recording stopped: its samples, ready to become profiles.
pub(crate) struct Stopped {
    samples: Aggregate,
    symbols: Symbolizer,
    started: SystemTime,
    duration: Duration,
    period: Duration,
    pub(crate) stats: Stats,
}

impl Recording {
    /// Starts sampling at 100 Hz of CPU time, each sample tagged with its thread's segment.
    pub(crate) fn start() -> Result<Recording, skytrace_sampler::Error> {
        Ok(Recording {
            session: Session::start(DEFAULT_PERIOD)?,
            samples: Aggregate::default(),
        })
    }

    /// Moves the samples taken since the last call into the recording. Call it every 100 ms
    /// or so while sampling.
    pub(crate) fn drain(&mut self) {
        let samples = &mut self.samples;
        self.session.drain(|sample| samples.add(sample));
    }

    /// Stops sampling (the handler is gone when this returns) and reads the symbols.
    pub(crate) fn stop(mut self) -> Stopped {
        self.session.stop();
        self.drain();
        let started = self.session.started();
        Stopped {
            duration: SystemTime::now()
                .duration_since(started)
                .unwrap_or(Duration::ZERO),
            symbols: self.session.symbolizer(),
            started,
            period: self.session.period(),
            stats: self.session.stats(),
            samples: self.samples,
        }
    }
}

impl Stopped {
    /// The profile of the samples `keep` selects.
    pub(crate) fn build(&mut self, keep: Keep<'_>) -> Profile {
        pprof::build(
            &self.samples,
            &mut self.symbols,
            keep,
            self.started,
            self.duration,
            self.period,
        )
    }

    /// Samples counted, and dropped for the memory bound.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.samples.samples, self.samples.dropped)
    }
}
