//! What every handler can reach: the actions' context, and what only HTTP
//! needs (token verification, request metrics, the body limit).

use super::metrics::Metrics;
use super::problem::ApiError;
use crate::app::{AppError, Context};
use crate::auth::jwt::JwtVerifier;
use actix_web::web;
use std::sync::Arc;

pub struct AppState {
    /// What actions run with.
    pub ctx: Arc<Context>,
    pub verifier: JwtVerifier,
    pub metrics: Metrics,
    pub body_limit: usize,
    /// Stops the background workers when the state goes away.
    pub workers: crate::workers::Workers,
}

impl AppState {
    /// Runs an action on the blocking pool: actions wait on the database,
    /// and the HTTP workers must not. The action runs inside the request's
    /// span, so what it logs carries the request ID.
    pub async fn run<T, F>(&self, action: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Context) -> Result<T, AppError> + Send + 'static,
    {
        let ctx = self.ctx.clone();
        let span = tracing::Span::current();
        Ok(web::block(move || span.in_scope(|| action(&ctx))).await??)
    }
}
