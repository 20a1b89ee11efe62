//! The use cases: every action that changes state, and every read that is
//! logged, as a function of a [`Context`], the caller and an already
//! parsed command.
//!
//! An action runs its one transaction (the change, its access-log entries
//! and its outbox rows commit together or not at all), wakes the workers
//! that follow the log, and returns a domain result or an [`AppError`].
//! It never sees HTTP: the JSON API (`api`), the background workers
//! (`workers`) and any page call the same actions, so a rule holds however
//! a person reaches it. Each action authorizes its caller itself, through
//! the gates in [`gates`], so no adapter can forget to.
//!
//! One module per resource; a resource with several actions is a folder
//! with one file per action or aggregate.

pub mod caches;
pub mod context;
pub mod enrollment_qr;
pub mod entries;
pub mod error;
pub mod gates;
pub mod idempotency;
pub mod log_runtime;
pub mod ratelimit;
pub mod text;

pub mod agreements;
pub mod applications;
pub mod consents;
pub mod demo;
pub mod documents;
pub mod email;
pub mod enquiries;
pub mod enrollment;
pub mod log;
pub mod passkeys;
pub mod patients;
pub mod portal;
pub mod portal_sessions;
pub mod recalls;
pub mod reconsent;
pub mod recontact;
pub mod register;
pub mod releases;
pub mod samples;
pub mod transparency;
pub mod visas;
pub mod webhooks;

pub use context::{Context, WebhookRules};
pub use error::{AccessRefusal, AppError};
pub use log_runtime::LogRuntime;
