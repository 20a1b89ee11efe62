//! The HTTP API. Each module holds the handlers of one resource; this module
//! only wires them together and generates the OpenAPI document from the same
//! registrations, so routes and spec cannot drift apart unnoticed.

pub mod access;
pub mod agreements;
pub mod applications;
pub mod consents;
pub mod datasets;
pub mod documents;
pub mod enrollment_qr;
pub mod extract;
pub mod governance;
pub mod health;
pub mod log;
pub mod metrics;
pub mod middleware;
pub mod organizations;
pub mod patients;
pub mod portal;
pub mod ratelimit;
pub mod reconsent;
pub mod recontact;
pub mod releases;
pub mod samples;
pub mod state;
pub mod transparency;
pub mod visas;

use crate::error::{ApiError, FieldError, Problem};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App};
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
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(health::openapi_json)
        .service(documents::list_versions)
        .service(documents::get_version)
        .service(documents::create_draft)
        .service(documents::update_draft)
        .service(documents::publish_version)
        .service(consents::register_consent)
        .service(patients::lookup_patient)
        .service(consents::read_consent)
        .service(consents::list_events)
        .service(consents::export_fhir)
        .service(consents::change_consent)
        .service(consents::withdraw_consent)
        .service(patients::update_patient_status)
        .service(reconsent::reconsent_tasks)
        .service(samples::register_sample)
        .service(samples::get_sample)
        .service(samples::correct_object)
        .service(samples::patient_samples)
        .service(samples::authorize_center)
        .service(samples::list_centers)
        .service(samples::revoke_center)
        .service(recontact::open_request)
        .service(recontact::list_requests)
        .service(recontact::get_request)
        .service(recontact::approve)
        .service(recontact::reject)
        .service(recontact::unseal)
        .service(log::checkpoint)
        .service(log::keys)
        .service(log::inclusion)
        .service(log::consistency)
        .service(log::audit_log)
        .service(log::screening)
        .service(log::screening_reports)
        .service(portal::issue_enrollment_code)
        .service(portal::enroll)
        .service(portal::sign_in)
        .service(portal::my_access_log)
        .service(portal::my_consents)
        .service(portal::my_notifications)
        .service(portal::my_preferences)
        .service(portal::set_my_preferences)
        .service(portal::add_my_webhook)
        .service(portal::my_webhooks)
        .service(portal::remove_my_webhook)
        .service(portal::my_webhook_deliveries)
        .service(portal::add_hospital_webhook)
        .service(portal::hospital_webhook_deliveries)
        .service(organizations::verify_organization)
        .service(organizations::record_attestation)
        .service(datasets::create_dataset)
        .service(datasets::add_dataset_samples)
        .service(datasets::list_datasets)
        .service(agreements::publish_agreement_text)
        .service(agreements::current_agreement_text)
        .service(agreements::agreement_text)
        .service(applications::submit_application)
        .service(applications::list_applications)
        .service(applications::get_application)
        .service(applications::vote)
        .service(agreements::accept_agreement)
        .service(agreements::sanction_agreement)
        .service(transparency::approved_uses)
        .service(transparency::processing_times)
        .service(releases::create_release)
        .service(releases::releases_of_application)
        .service(releases::get_release)
        .service(releases::manifest)
        .service(releases::resolve_handle)
        .service(releases::jwks)
        .service(releases::recalls)
        .service(releases::add_recall_webhook)
        .service(releases::recall_webhooks)
        .service(releases::remove_recall_webhook)
        .service(releases::recall_webhook_deliveries)
        .service(visas::issue_visas)
        .service(visas::visas_issued)
        .split_for_parts();
    let spec_json = spec.to_json().unwrap_or_else(|_| "{}".to_owned());
    app.app_data(state)
        .app_data(web::Data::new(health::OpenApiJson(spec_json)))
        .app_data(extract::json_config(body_limit))
        .app_data(extract::path_config())
        .app_data(extract::query_config())
        .app_data(web::PayloadConfig::new(body_limit))
        .default_service(web::to(|| async {
            Err::<actix_web::HttpResponse, _>(ApiError::RouteNotFound)
        }))
        .wrap(actix_web::middleware::from_fn(middleware::request_context))
}
