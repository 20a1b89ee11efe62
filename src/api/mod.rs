//! The HTTP API. Each module holds the handlers of one resource and wires
//! its own routes; this module only puts them together and generates the OpenAPI document from the same
//! registrations, so routes and spec cannot drift apart unnoticed.

pub mod agreements;
pub mod applications;
pub mod consents;
pub mod contract;
pub mod datasets;
pub mod documents;
pub mod enquiries;
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
pub mod schema;
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
        (name = "enquiries", description = "Patients' questions to their hospital and reports to the governance body, opened and answered by staff"),
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
    let (app, spec) = with_routes(App::new().into_utoipa_app()).split_for_parts();
    let description = described(&spec, &vocabulary(&state.ctx));
    let routes = web::Data::new(routes::Routes::from_description(&description));
    let refusals = routes.clone();
    app.app_data(state)
        .app_data(web::Data::new(health::OpenApiJson(description.to_string())))
        .app_data(routes)
        .app_data(extract::json_config(body_limit))
        .app_data(extract::path_config())
        .app_data(extract::query_config())
        .app_data(web::PayloadConfig::new(body_limit))
        .configure(crate::web::routes)
        .default_service(web::to(move |req: actix_web::HttpRequest| {
            let refusal = refusals.refusal(req.path());
            async move { Err::<actix_web::HttpResponse, _>(refusal) }
        }))
        .wrap(actix_web::middleware::from_fn(middleware::request_context))
}

/// Every resource's routes, and the OpenAPI description they make.
pub(crate) fn with_routes<T>(app: utoipa_actix_web::UtoipaApp<T>) -> utoipa_actix_web::UtoipaApp<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    app.openapi(ApiDoc::openapi())
        .configure(health::routes)
        .configure(documents::routes)
        .configure(consents::routes)
        .configure(patients::routes)
        .configure(reconsent::routes)
        .configure(samples::routes)
        .configure(recontact::routes)
        .configure(enquiries::routes)
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
}

/// The OpenAPI description the service serves at `/openapi.json`, for the
/// policies of `ctx`.
pub fn description(ctx: &crate::app::Context) -> serde_json::Value {
    let (_, spec) = with_routes(App::new().into_utoipa_app()).split_for_parts();
    described(&spec, &vocabulary(ctx))
}

/// The OpenAPI description as served: generated from the routes, completed
/// with each operation's security and refusals and each field's rule.
fn described(
    spec: &utoipa::openapi::OpenApi,
    vocabulary: &contract::Vocabulary,
) -> serde_json::Value {
    let mut doc = serde_json::to_value(spec).unwrap_or_default();
    for unknown in contract::complete(&mut doc, vocabulary) {
        tracing::warn!(target = %unknown, "the API contract names what the routes do not have");
    }
    doc
}

/// The words this deployment's policies give some fields.
fn vocabulary(ctx: &crate::app::Context) -> contract::Vocabulary {
    contract::Vocabulary {
        forbidden_purposes: ctx.data_use.purposes.forbidden.clone(),
        diseases: ctx.diseases.diseases.keys().cloned().collect(),
        scope_items: ctx.catalog.keys().map(|k| k.as_str().to_owned()).collect(),
        audiences: ctx.data_use.release.audiences.clone(),
    }
}
