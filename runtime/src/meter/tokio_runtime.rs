//! A tokio runtime's meters, from tokio's stable metrics API (`RuntimeMetrics::num_workers`,
//! `num_alive_tasks` and `global_queue_depth`, stable since tokio 1.39; the others need
//! `--cfg tokio_unstable`).

use std::sync::Arc;

use tokio::runtime::{Handle, RuntimeMetrics};

use super::names;
use super::registry::{MeterRegistry, Source, SourceKind};

struct TokioSource {
    metrics: RuntimeMetrics,
}

impl Source for TokioSource {
    fn collect(&self, out: &mut Vec<(&'static str, f64)>) {
        out.push((names::TOKIO_WORKERS, self.metrics.num_workers() as f64));
        out.push((
            names::TOKIO_ALIVE_TASKS,
            self.metrics.num_alive_tasks() as f64,
        ));
        out.push((
            names::TOKIO_GLOBAL_QUEUE_DEPTH,
            self.metrics.global_queue_depth() as f64,
        ));
    }
}

impl MeterRegistry {
    /// Adds the meters of the tokio runtime behind `handle` (`instance_rust_tokio_*`: workers,
    /// alive tasks, global queue depth). One runtime is observed: a second call replaces the
    /// first. The registry keeps a handle, which keeps the runtime's shared state (not its
    /// threads) alive.
    ///
    /// ```
    /// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let registry = skytrace::meter::MeterRegistry::new();
    /// registry.register_tokio_runtime(runtime.handle());
    /// ```
    pub fn register_tokio_runtime(&self, handle: &Handle) {
        let source = TokioSource {
            metrics: handle.metrics(),
        };
        self.set_source(SourceKind::Tokio, Arc::new(source));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        // A task that stays alive until the test lets it go.
        runtime.spawn(async move {
            let _ = started_tx.send(());
            let _ = rx.await;
        });
        // Once it runs, it has left the global queue.
        started_rx.recv().unwrap();
        let source = TokioSource {
            metrics: runtime.handle().metrics(),
        };
        let mut out = Vec::new();
        source.collect(&mut out);
        let m: std::collections::HashMap<_, _> = out.into_iter().collect();
        assert_eq!(m[names::TOKIO_WORKERS], 2.0);
        assert!(m[names::TOKIO_ALIVE_TASKS] >= 1.0, "{m:?}");
        assert_eq!(m[names::TOKIO_GLOBAL_QUEUE_DEPTH], 0.0);
        let _ = tx.send(());
    }
}
