//! Builders: how a meter gets its name and labels before the registry hands it out. This file
//! imports both the registry and the meter kinds; neither imports it back.

use std::fmt;

use super::counter::{Counter, CounterMode};
use super::error::MeterError;
use super::gauge::{Gauge, ReadFn};
use super::histogram::Histogram;
use super::registry::MeterRegistry;

// An inherent impl may live in any file of the crate: the registry's entry points are here,
// next to the builders they return, so registry.rs never imports this file.
impl MeterRegistry {
    /// Starts registering a [`Counter`].
    pub fn counter(&self, name: impl Into<String>) -> CounterBuilder<'_> {
        CounterBuilder::new(self, name.into())
    }

    /// Starts registering a [`Gauge`] that reports what `read` returns each period.
    pub fn gauge(
        &self,
        name: impl Into<String>,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> GaugeBuilder<'_> {
        GaugeBuilder::new(self, name.into(), Box::new(read))
    }

    /// Starts registering a [`Histogram`] with these bucket lower bounds.
    pub fn histogram(&self, name: impl Into<String>, bounds: &[f64]) -> HistogramBuilder<'_> {
        HistogramBuilder::new(self, name.into(), bounds.to_vec())
    }
}

/// Registers a [`Counter`]: made by [`MeterRegistry::counter`] or [`counter`](super::counter).
#[must_use = "a builder does nothing until `build` is called"]
pub struct CounterBuilder<'r> {
    registry: &'r MeterRegistry,
    name: String,
    labels: Vec<(String, String)>,
    mode: CounterMode,
}

impl<'r> CounterBuilder<'r> {
    fn new(registry: &'r MeterRegistry, name: String) -> Self {
        CounterBuilder {
            registry,
            name,
            labels: Vec::new(),
            mode: CounterMode::Total,
        }
    }

    /// Adds a label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Sets how the counter reports (default [`CounterMode::Total`]).
    pub fn mode(mut self, mode: CounterMode) -> Self {
        self.mode = mode;
        self
    }

    /// Registers the counter, or returns the one already registered with this name and labels.
    pub fn build(self) -> Result<Counter, MeterError> {
        self.registry
            .register_counter(&self.name, self.labels, self.mode)
    }
}

impl fmt::Debug for CounterBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CounterBuilder")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Registers a [`Gauge`]: made by [`MeterRegistry::gauge`] or [`gauge`](super::gauge).
#[must_use = "a builder does nothing until `build` is called"]
pub struct GaugeBuilder<'r> {
    registry: &'r MeterRegistry,
    name: String,
    labels: Vec<(String, String)>,
    read: Box<ReadFn>,
}

impl<'r> GaugeBuilder<'r> {
    fn new(registry: &'r MeterRegistry, name: String, read: Box<ReadFn>) -> Self {
        GaugeBuilder {
            registry,
            name,
            labels: Vec::new(),
            read,
        }
    }

    /// Adds a label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Registers the gauge. If one with this name and labels exists already, that one is
    /// returned and this builder's function is dropped.
    pub fn build(self) -> Result<Gauge, MeterError> {
        self.registry
            .register_gauge(&self.name, self.labels, self.read)
    }
}

impl fmt::Debug for GaugeBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GaugeBuilder")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// Registers a [`Histogram`]: made by [`MeterRegistry::histogram`] or
/// [`histogram`](super::histogram).
#[must_use = "a builder does nothing until `build` is called"]
pub struct HistogramBuilder<'r> {
    registry: &'r MeterRegistry,
    name: String,
    labels: Vec<(String, String)>,
    bounds: Vec<f64>,
}

impl<'r> HistogramBuilder<'r> {
    fn new(registry: &'r MeterRegistry, name: String, bounds: Vec<f64>) -> Self {
        HistogramBuilder {
            registry,
            name,
            labels: Vec::new(),
            bounds,
        }
    }

    /// Adds a label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Registers the histogram, or returns the one already registered with this name, labels
    /// and bounds.
    pub fn build(self) -> Result<Histogram, MeterError> {
        self.registry
            .register_histogram(&self.name, self.labels, &self.bounds)
    }
}

impl fmt::Debug for HistogramBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramBuilder")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("bounds", &self.bounds)
            .finish()
    }
}
