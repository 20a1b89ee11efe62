//! Liveness, readiness, metrics and the OpenAPI document.

use super::metrics::Gauges;
use super::problem::ApiError;
use super::state::AppState;
use crate::app::AppError;
use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(healthz)
        .service(readyz)
        .service(metrics)
        .service(openapi_json);
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    /// `accepted`: the database took a write (rolled back at once).
    pub writes: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness: the database answers and takes writes. A full disk, a
/// read-only file or a standby gives 503 `service_unavailable` with
/// `Retry-After`, as every write then does.
#[utoipa::path(tag = "operations", responses((status = 200, body = Readiness)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<web::Json<Readiness>, ApiError> {
    state
        .run(|ctx| {
            ctx.read(|conn| {
                crate::db::ping(conn).map_err(|_| AppError::Unavailable)?;
                Ok(crate::db::probe_write(conn)?)
            })
        })
        .await?;
    Ok(web::Json(Readiness {
        status: "ready",
        database: state.ctx.backend.as_str(),
        writes: "accepted",
    }))
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(tag = "operations", responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.ctx.pool.state();
    let now = state.ctx.clock.now().naive_utc();
    let backlog = state
        .run(move |ctx| ctx.read(|conn| Ok(crate::db::notify::backlog(conn, now)?)))
        .await
        .ok();
    let gauges = Gauges {
        pool_connections: pool.connections,
        pool_idle: pool.idle_connections,
        backlog,
        worker_panics: crate::workers::panics_by_worker(),
        dead_lettered: crate::workers::dead_lettered(),
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&gauges))
}

/// The generated OpenAPI document, held in app data after the routes were
/// collected.
pub struct OpenApiJson(pub String);

/// This OpenAPI 3.1 document, generated from the code.
#[utoipa::path(tag = "operations", responses((status = 200, content_type = "application/json", body = Object)))]
#[get("/openapi.json")]
pub async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}
