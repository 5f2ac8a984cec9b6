//! Per-span cost: one call of a traced function inside an active, sampled trace, for skytrace
//! and its peers, plus skytrace's cheap paths (feature off, no trace, unsampled) and a plain
//! call for reference.
//!
//! Every traced function has the same body (`common::work`) and is `#[inline(never)]`. Every
//! case runs the same loop (`common::Peers::batch`): calls in batches of
//! `common::SPANS_PER_SEGMENT`, under one root (entry) span per batch where the case has one;
//! the calls are timed with entering and leaving the root's scope (where skytrace and fastrace
//! hand the spans recorded on the thread to their trace), not making and finishing the root,
//! which the segment bench measures.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};

use common::{Case, Peers};

fn per_span(c: &mut Criterion) {
    let peers = Peers::new();
    let mut g = c.benchmark_group("per_span");
    for case in Case::ALL {
        g.bench_function(case.name(), |b| {
            b.iter_custom(|iters| peers.run(case, iters))
        });
    }
    g.finish();
    fastrace::flush();
}

criterion_group!(benches, per_span);
criterion_main!(benches);
