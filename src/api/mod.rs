//! The HTTP API. Each module holds the handlers of one resource and wires
//! its own routes; this module only puts them together and generates the OpenAPI document from the same
//! registrations, so routes and spec cannot drift apart unnoticed.

pub mod agreements;
pub mod applications;
pub mod consents;
pub mod datasets;
pub mod documents;
pub mod extract;
pub mod health;
pub mod log;
pub mod metrics;
pub mod middleware;
pub mod organizations;
pub mod patients;
pub mod portal;
pub mod problem;
pub mod reconsent;
pub mod recontact;
pub mod releases;
pub mod replay;
pub mod routes;
pub mod samples;
pub mod state;
pub mod transparency;
pub mod visas;
pub mod webhooks;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App};
use problem::{FieldError, Problem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GenomeGate",
        description = "Consent and genomic-data governance: versioned unified consent documents, per-patient e-consent, FHIR export.\n\nErrors are RFC 9457 `application/problem+json` documents with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "documents", description = "Versioned unified consent documents (統一同意説明文書)"),
        (name = "consents", description = "Per-patient e-consent registered by hospitals"),
        (name = "samples", description = "Genome samples and data-object references under pseudonymous genome IDs"),
        (name = "recontact", description = "Recontact requests under dual control"),
        (name = "log", description = "The tamper-evident access log: signed checkpoints, inclusion and consistency proofs, auditors' queries"),
        (name = "patients", description = "Hospital-side patient enrollment codes and patient-app webhooks"),
        (name = "data-access", description = "Organizations, ethics training, datasets, data-use applications with DUO matching, committee review, agreements, consent-checked releases, dataset handles, GA4GH Passport visas, and the public transparency register"),
        (name = "portal", description = "The patient portal: enrollment, access log, consent, live notifications, preferences, webhooks")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The application: every route, its OpenAPI description, the extractor
/// configuration and the request-context middleware.
pub fn app(
    state: web::Data<state::AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let body_limit = state.body_limit;
    let (app, spec) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(health::routes)
        .configure(documents::routes)
        .configure(consents::routes)
        .configure(patients::routes)
        .configure(reconsent::routes)
        .configure(samples::routes)
        .configure(recontact::routes)
        .configure(log::routes)
        .configure(portal::routes)
        .configure(webhooks::routes)
        .configure(organizations::routes)
        .configure(datasets::routes)
        .configure(agreements::routes)
        .configure(applications::routes)
        .configure(transparency::routes)
        .configure(releases::routes)
        .configure(visas::routes)
        .split_for_parts();
    let spec_json = spec.to_json().unwrap_or_else(|_| "{}".to_owned());
    let routes = std::sync::Arc::new(routes::Routes::from_spec(&spec));
    app.app_data(state)
        .app_data(web::Data::new(health::OpenApiJson(spec_json)))
        .app_data(extract::json_config(body_limit))
        .app_data(extract::path_config())
        .app_data(extract::query_config())
        .app_data(web::PayloadConfig::new(body_limit))
        .default_service(web::to(move |req: actix_web::HttpRequest| {
            let refusal = routes.refusal(req.path());
            async move { Err::<actix_web::HttpResponse, _>(refusal) }
        }))
        .wrap(actix_web::middleware::from_fn(middleware::request_context))
}
