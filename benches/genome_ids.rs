//! Per-project identifier derivation on one core, beside raw HMAC-SHA256
//! (ring) over the same inputs in the same run.
//!
//!     cargo bench --bench genome_ids
//!
//! There are no writes here, so the baseline is the bare keyed hash: the
//! difference is what formatting and the check character cost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use genomegate::pseudonym::genome_id::{project_sample_id, sample_id};
use genomegate::pseudonym::keyring::{KeyDomain, Keyring};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let count: u32 = std::env::var("BENCH_IDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let keys = Keyring::generate(chrono::Utc::now()).unwrap();
    let sample_key = keys.current(KeyDomain::Sample);
    let project_key = keys.current(KeyDomain::Project);
    // Inputs prepared up front so both loops time only the derivation.
    let samples: Vec<_> = (0..1024u32)
        .map(|i| sample_id(sample_key, "hospital-a", &format!("SPEC-{i}")))
        .collect();
    let printed: Vec<String> = samples.iter().map(|s| s.to_string()).collect();

    // Baseline: raw HMAC-SHA256 over the same bytes the derivation hashes.
    let raw_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7u8; 32]);
    let started = Instant::now();
    for i in 0..count {
        let input = &printed[(i as usize) & 1023];
        let mut ctx = ring::hmac::Context::with_key(&raw_key);
        ctx.update(b"genomegate/project-sample/v1");
        ctx.update(b"project-alpha");
        ctx.update(input.as_bytes());
        black_box(ctx.sign());
    }
    let raw = count as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    for i in 0..count {
        black_box(project_sample_id(
            project_key,
            "project-alpha",
            &samples[(i as usize) & 1023],
        ));
    }
    let derived = count as f64 / started.elapsed().as_secs_f64();

    println!("genome_ids: one core, {count} per-project sample IDs");
    println!(
        "  per-project ID derivation (HMAC + base32 + check character): {derived:>12.0} IDs/s"
    );
    println!(
        "  raw HMAC-SHA256 over the same inputs:                         {raw:>12.0} hashes/s"
    );
    println!("  ratio derivation/raw: {:.2}", derived / raw);
    println!("  target: >= 1,000,000 IDs/s on one core");
}
