//! Heap allocations: per span (each per-span case of `span.rs`), per realistic segment, and
//! per request through the axum layer. Counted by a global allocator that counts the calls made
//! on the measuring thread (`alloc`, `alloc_zeroed` and `realloc`; a `realloc` that grows a
//! `Vec` counts as one allocation of its new size).
//!
//! Per span = (allocations of a batch of 100 calls − those of an empty batch) / 100, so the
//! batch's root (made and finished in both) cancels out, and what remains is the calls' own,
//! including their share of growing the segment's span list.
//!
//! Prints its figures (this is not a criterion bench).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use common::{Args, Case, Peers, SPANS_PER_SEGMENT};

struct Counting;

thread_local! {
    /// (allocations, bytes) made by this thread.
    static COUNT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn bump(size: usize) {
    let _ = COUNT.try_with(|c| {
        let (n, b) = c.get();
        c.set((n + 1, b + size as u64));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; counting touches only a const
// thread-local without a destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// (allocations, bytes) that `f` makes on this thread.
fn count(f: impl FnOnce()) -> (u64, u64) {
    let (n0, b0) = COUNT.with(Cell::get);
    f();
    let (n1, b1) = COUNT.with(Cell::get);
    (n1 - n0, b1 - b0)
}

fn main() {
    let args = Args::parse();
    let peers = Peers::new();
    let rounds: u64 = if args.bench { 200 } else { 10 };

    if args.wants("allocs/per_span") {
        println!("allocs/per_span (heap allocations per traced call, and bytes)");
        for case in Case::ALL {
            // Warm-up: thread-locals, pools, slabs.
            for _ in 0..20 {
                peers.batch(case, SPANS_PER_SEGMENT);
            }
            let full = count(|| {
                for _ in 0..rounds {
                    peers.batch(case, SPANS_PER_SEGMENT);
                }
            });
            let empty = count(|| {
                for _ in 0..rounds {
                    peers.batch(case, 0);
                }
            });
            let calls = (rounds * SPANS_PER_SEGMENT) as f64;
            println!(
                "  {:<22} {:>8.2} allocs {:>9.1} bytes",
                case.name(),
                full.0.saturating_sub(empty.0) as f64 / calls,
                full.1.saturating_sub(empty.1) as f64 / calls,
            );
        }
    }

    if args.wants("allocs/segment") {
        println!("allocs/segment (per realistic segment: 12 spans, 20 tags, sw8 injected)");
        let mut incoming = http::HeaderMap::new();
        incoming.insert(
            "sw8",
            common::sample_sw8()
                .encode()
                .try_into()
                .expect("header value"),
        );
        let empty = http::HeaderMap::new();
        let tracer = peers.skytrace();
        let sw = peers.skywalking();
        let cases: [(&str, &dyn Fn()); 4] = [
            ("skytrace/new_trace", &|| {
                black_box(common::skytrace_segment(tracer, &empty));
            }),
            ("skywalking/new_trace", &|| {
                black_box(common::skywalking_segment(sw, None));
            }),
            ("skytrace/continued", &|| {
                black_box(common::skytrace_segment(tracer, &incoming));
            }),
            ("skywalking/continued", &|| {
                black_box(common::skywalking_segment(sw, Some(&incoming)));
            }),
        ];
        for (name, f) in cases {
            for _ in 0..20 {
                f();
            }
            let (n, b) = count(|| {
                for _ in 0..rounds {
                    f();
                }
            });
            println!(
                "  {name:<22} {:>8.1} allocs {:>9.0} bytes",
                n as f64 / rounds as f64,
                b as f64 / rounds as f64
            );
        }
    }

    if args.wants("allocs/axum") {
        println!("allocs/axum (per request through the hello-world router, called as a service)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for layered in [false, true] {
            use tower_service::Service as _;
            let mut app = axum::Router::new()
                .route("/hello", axum::routing::get(|| async { "Hello, World!" }));
            if layered {
                app = app.layer(skytrace::integrations::axum::SkytraceLayer::with_tracer(
                    peers.skytrace().clone(),
                ));
            }
            let mut one = || {
                let request = http::Request::get("/hello")
                    .header(http::header::HOST, "127.0.0.1:8080")
                    .body(axum::body::Body::empty())
                    .expect("request");
                rt.block_on(async {
                    black_box(app.call(request).await.expect("response"));
                });
            };
            for _ in 0..20 {
                one();
            }
            let (n, b) = count(|| {
                for _ in 0..rounds {
                    one();
                }
            });
            println!(
                "  {:<22} {:>8.1} allocs {:>9.0} bytes",
                if layered { "skytrace layer" } else { "plain" },
                n as f64 / rounds as f64,
                b as f64 / rounds as f64
            );
        }
    }
}
