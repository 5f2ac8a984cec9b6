//! One CPU recording: a sampler session, drained into an [`Aggregate`], turned into a pprof
//! when it ends. Used by both kinds of task.

use std::time::{Duration, SystemTime};

use skytrace_proto::pprof::Profile;
use skytrace_sampler::{DEFAULT_PERIOD, Session, Stats};

use super::aggregate::Aggregate;
use super::pprof::{self, Keep};

pub(crate) struct Recording {
    session: Session,
    samples: Aggregate,
}

/// What a finished recording gives: the profile and how it went.
pub(crate) struct Finished {
    pub(crate) profile: Profile,
    pub(crate) samples: u64,
    pub(crate) dropped: u64,
    pub(crate) stats: Stats,
}

impl Recording {
    /// Starts sampling at 100 Hz of CPU time, each sample tagged with its thread's segment.
    pub(crate) fn start() -> Result<Recording, skytrace_sampler::Error> {
        super::tag::install();
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

    /// Stops sampling and builds the profile of the samples `keep` selects.
    pub(crate) fn finish(mut self, keep: Keep<'_>) -> Finished {
        self.session.stop();
        self.drain();
        let started = self.session.started();
        let duration = SystemTime::now()
            .duration_since(started)
            .unwrap_or(Duration::ZERO);
        let mut symbols = self.session.symbolizer();
        let profile = pprof::build(
            &self.samples,
            &mut symbols,
            keep,
            started,
            duration,
            self.session.period(),
        );
        Finished {
            profile,
            samples: self.samples.samples,
            dropped: self.samples.dropped,
            stats: self.session.stats(),
        }
    }
}
