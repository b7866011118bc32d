//! The integration tests: one crate (one build and link of the support code, not eleven), one module per
//! area. Every test drives the real binary through `support::Ws`, whose outputs insist that their exit code
//! is checked (see `support::Out`).

mod support;

mod architectures;
mod causal;
mod ci;
mod concurrency;
mod errors;
mod everyday;
mod frames;
mod freshness;
mod grids;
mod hub;
mod interop;
mod invariants;
mod layouts;
mod properties;
mod remote;
mod stats;
mod torch_bin;
mod trust;
