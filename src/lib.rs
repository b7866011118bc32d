//! gamma-run: extracts language models' unembedding matrix W into coordinate frames, with manifests that record
//! provenance and decide freshness. The binary (`main.rs`) is a thin shell over these modules.

pub mod alloc;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod dev;
pub mod dtype;
pub mod env;
pub mod error;
pub mod frame;
pub mod fsread;
pub mod grid;
pub mod hub;
pub mod job;
pub mod manifest;
pub mod names;
pub mod progress;
pub mod redact;
pub mod remote;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod selection;
pub mod source;
pub mod store;
pub mod text;
pub mod unembedding;
