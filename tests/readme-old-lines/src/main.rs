//! The README's quick start, compiled as a user on axum 0.7 and reqwest 0.12 compiles it, with
//! the features the README names for them (`axum-0-7`, `reqwest-0-12`): if the README's code or
//! the features stop fitting those lines, this crate stops building.

// The quick start declares items it does not use (a handler for a job, a router never served).
#![allow(dead_code, unused_variables)]

include!(concat!(env!("OUT_DIR"), "/quickstart.rs"));
