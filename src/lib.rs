//! GenomeGate: consent and genomic-data governance.
//!
//! The crate is laid out as rooms of a house. Domain rooms (`consent`,
//! `pseudonym`, `ledger`, `access`, `calendar`) hold pure rules with no actix or diesel in them; infrastructure
//! rooms (`db`, `auth`, `api`, `web`, `server`) adapt those rules to the outside world;
//! `app` holds the use cases both the JSON API (`api`) and the pages (`web`) call.

/// Every binary linking the service (the server, its tests and benchmarks)
/// allocates through mimalloc: releases and resolutions allocate millions
/// of small strings across threads, where glibc's allocator spent a quarter
/// of the process's CPU (decision 0015).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod access;
pub mod api;
pub mod app;
pub mod auth;
pub mod calendar;
pub mod certs;
pub mod clock;
pub mod config;
pub mod consent;
pub mod db;
pub mod ed25519;
pub mod genome;
pub mod integral;
pub mod keyfile;
pub mod ledger;
pub mod notify;
pub mod pseudonym;
pub mod server;
pub mod telemetry;
pub mod web;
pub mod workers;
