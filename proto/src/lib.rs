//! The SkyWalking data-collect protocol v3 as Rust types, with tonic client and server stubs.
//!
//! Every message, field number and service path matches what SkyWalking's OAP and the official
//! agents use (`/skywalking.v3.<Service>/<rpc>`). The `.proto` sources live in `protos/` and are
//! compiled at build time by a pure-Rust protobuf compiler.
//!
//! ```
//! use skytrace_proto::v3::{SegmentObject, SpanObject, SpanType};
//!
//! let segment = SegmentObject {
//!     trace_id: "t".into(),
//!     trace_segment_id: "s".into(),
//!     spans: vec![SpanObject {
//!         span_id: 0,
//!         parent_span_id: -1,
//!         span_type: SpanType::Entry as i32,
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! assert_eq!(segment.spans[0].parent_span_id, -1);
//! ```

/// Package `skywalking.v3`.
pub mod v3 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("skywalking.v3");
}

/// Package `skywalking.v10`: on-demand pprof profiles (`PprofTask`).
pub mod v10 {
    // `non_camel_case_types`: tonic names the stream type of the bidirectional `collect`
    // `collectStream`, after the rpc.
    #![allow(missing_docs, non_camel_case_types, clippy::all, clippy::pedantic)]
    tonic::include_proto!("skywalking.v10");
}

/// Package `perftools.profiles`: the pprof profile format's messages (`Profile` and its parts),
/// for the profiles sent with `ProfileTask/goProfileReport` and `PprofTask/collect`.
///
/// ```
/// use skytrace_proto::pprof::{Function, Profile};
///
/// let profile = Profile {
///     string_table: vec![String::new(), "main".into()],
///     function: vec![Function { id: 1, name: 1, ..Default::default() }],
///     ..Default::default()
/// };
/// assert_eq!(profile.string_table[profile.function[0].name as usize], "main");
/// ```
pub mod pprof {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("perftools.profiles");
}
