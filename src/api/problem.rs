//! Refusals as RFC 9457 problem documents: the one table from every
//! error an action or the HTTP layer can raise to its status, stable `code`
//! and title.
//!
//! [`ApiError`] is what handlers return: an action's [`AppError`], or one
//! of the refusals only HTTP has (a body that is not JSON, a bad token, an
//! unknown route). Internal causes are logged with the request ID, never
//! returned. The request-context middleware adds `instance` and
//! `request_id` on the way out.

use crate::app::{AccessRefusal, AppError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// `Retry-After` of a `503 service_unavailable`.
const UNAVAILABLE_RETRY_SECONDS: u64 = 5;

#[derive(Debug)]
pub enum ApiError {
    /// An action's refusal or failure.
    App(AppError),
    /// 400: the body is not JSON, or not the JSON shape the endpoint takes.
    MalformedJson(String),
    /// 413
    PayloadTooLarge { limit: usize },
    /// 415
    UnsupportedMediaType,
    /// 400: a state-changing POST without an `Idempotency-Key` header.
    IdempotencyKeyRequired,
    /// 401: malformed, badly signed, `alg=none`, HS*, wrong audience.
    InvalidToken,
    /// 401
    TokenExpired,
    /// 401: signed by a key or issuer this service does not trust.
    UntrustedIssuer,
    /// 401: the TLS client certificate belongs to another organization than
    /// the token.
    ClientCertificateMismatch,
    /// 404: no such route.
    RouteNotFound,
    /// 414: the request target is longer than the service reads.
    UriTooLong { limit: usize },
    /// 405: the path is the API's, the method is not one it answers; the
    /// methods it does go out as `Allow`.
    MethodNotAllowed { allow: String },
}

#[derive(Serialize, ToSchema, Debug)]
pub struct Problem {
    /// A URI naming the problem kind: `urn:genomegate:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Names this occurrence (`urn:uuid:` and the request ID), never the
    /// request path, which can carry pseudonyms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `decisions.recontact`.
    pub field: String,
    pub message: String,
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError::App(e)
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::App(AppError::Internal(format!("blocking pool: {e}")))
    }
}

impl ApiError {
    /// (status, code, title): the one table from error to wire.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            App(e) => app_parts(e),
            MalformedJson(_) => (
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "The request body is not valid JSON for this endpoint",
            ),
            PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large",
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send application/json",
            ),
            IdempotencyKeyRequired => (
                StatusCode::BAD_REQUEST,
                "idempotency_key_required",
                "An Idempotency-Key header is required",
            ),
            InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The bearer token is invalid",
            ),
            TokenExpired => (
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "The bearer token has expired",
            ),
            UntrustedIssuer => (
                StatusCode::UNAUTHORIZED,
                "untrusted_issuer",
                "The bearer token comes from an issuer this service does not trust",
            ),
            ClientCertificateMismatch => (
                StatusCode::UNAUTHORIZED,
                "client_certificate_mismatch",
                "The client certificate and the token name different organizations",
            ),
            RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found", "No such endpoint"),
            UriTooLong { .. } => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "The request URI is too long",
            ),
            MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed on this endpoint",
            ),
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            ApiError::App(e) => e.detail(),
            ApiError::MalformedJson(d) => Some(d.clone()),
            ApiError::PayloadTooLarge { limit } => Some(format!("the limit is {limit} bytes")),
            ApiError::UriTooLong { limit } => Some(format!("the limit is {limit} bytes")),
            _ => None,
        }
    }

    pub fn problem(&self, instance: Option<String>, request_id: Option<String>) -> Problem {
        let (status, code, title) = self.parts();
        let errors = match self {
            ApiError::App(AppError::Validation(problems)) => problems
                .iter()
                .map(|p| FieldError {
                    field: p.field.clone(),
                    message: p.message.clone(),
                })
                .collect(),
            ApiError::App(
                AppError::UnknownDocumentVersion | AppError::DocumentVersionNotActive { .. },
            ) => {
                vec![FieldError {
                    field: "document_version".into(),
                    message: title.into(),
                }]
            }
            ApiError::App(AppError::InvalidGenomeId { field }) => vec![FieldError {
                field: field.clone(),
                message: title.into(),
            }],
            ApiError::App(AppError::UnknownPatient { field }) => vec![FieldError {
                field: (*field).into(),
                message: title.into(),
            }],
            _ => Vec::new(),
        };
        Problem {
            problem_type: format!("urn:genomegate:problem:{code}"),
            title,
            status: status.as_u16(),
            detail: self.detail(),
            code,
            instance,
            request_id,
            errors,
        }
    }

    pub fn to_response(
        &self,
        instance: Option<String>,
        request_id: Option<String>,
    ) -> HttpResponse {
        let problem = self.problem(instance, request_id);
        let mut builder = HttpResponse::build(self.status_code());
        builder.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if matches!(
            self,
            ApiError::App(AppError::MissingToken)
                | ApiError::InvalidToken
                | ApiError::TokenExpired
                | ApiError::UntrustedIssuer
        ) {
            builder.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let ApiError::App(AppError::Unavailable) = self {
            // The database is gone or refuses writes; clients retry after.
            builder.insert_header((header::RETRY_AFTER, UNAVAILABLE_RETRY_SECONDS.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            if !allow.is_empty() {
                builder.insert_header((header::ALLOW, allow.as_str()));
            }
        }
        if let ApiError::App(AppError::RateLimited {
            retry_after_seconds,
        }) = self
        {
            builder.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
        }
        builder.body(serde_json::to_vec(&problem).unwrap_or_default())
    }
}

impl ApiError {
    /// One of every refusal the service sends, for the API description:
    /// each operation's problem responses name their codes from here.
    pub fn catalogue() -> Vec<ApiError> {
        use AppError::*;
        let app = [
            Validation(Vec::new()),
            IdempotencyKeyReused,
            MissingToken,
            Forbidden,
            NotFound,
            UnknownDocumentVersion,
            DocumentVersionNotActive { status: "draft" },
            VersionImmutable,
            VersionConflict(String::new()),
            NoActiveConsent,
            InvalidGenomeId {
                field: String::new(),
            },
            UnknownPatient { field: "" },
            ObjectChecksumConflict,
            ObjectUriInUse,
            SampleConflict,
            RecontactNotPermitted,
            RecontactRequiresCommittee,
            DuplicateApprover(""),
            InsufficientApprovals,
            RecontactClosed {
                state: String::new(),
            },
            VaultIntegrity,
            EnrollmentCodeInvalid,
            InvalidCredentials,
            RateLimited {
                retry_after_seconds: 0,
            },
            ProofUnavailable,
            Unavailable,
            Internal(String::new()),
        ]
        .into_iter()
        .chain(AccessRefusal::ALL.map(|r| Access(r, None)))
        .map(ApiError::App);
        app.chain([
            ApiError::MalformedJson(String::new()),
            ApiError::PayloadTooLarge { limit: 0 },
            ApiError::UnsupportedMediaType,
            ApiError::IdempotencyKeyRequired,
            ApiError::InvalidToken,
            ApiError::TokenExpired,
            ApiError::UntrustedIssuer,
            ApiError::ClientCertificateMismatch,
            ApiError::RouteNotFound,
            ApiError::UriTooLong { limit: 0 },
            ApiError::MethodNotAllowed {
                allow: String::new(),
            },
        ])
        .collect()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, code, title) = self.parts();
        write!(f, "{code}: {title}")
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            // Runs inside the request span, so the request ID is attached.
            ApiError::App(AppError::Internal(cause) | AppError::UniqueViolation(cause)) => {
                tracing::error!(cause = %cause, "internal error")
            }
            ApiError::App(AppError::VaultIntegrity) => {
                tracing::error!("identity vault record failed authentication: possible tampering")
            }
            _ => {}
        }
        self.to_response(None, None)
    }
}

fn app_parts(e: &AppError) -> (StatusCode, &'static str, &'static str) {
    use AppError::*;
    match e {
        Validation(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "The request has invalid fields",
        ),
        IdempotencyKeyReused => (
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request",
        ),
        MissingToken => (
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "A bearer token is required",
        ),
        Forbidden => (
            StatusCode::FORBIDDEN,
            "forbidden",
            "Policy does not allow this action",
        ),
        NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
        UnknownDocumentVersion => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_document_version",
            "No such consent document version",
        ),
        DocumentVersionNotActive { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "document_version_not_active",
            "The consent document version is not in force",
        ),
        VersionImmutable => (
            StatusCode::CONFLICT,
            "version_immutable",
            "A published document version cannot be changed",
        ),
        VersionConflict(_) => (
            StatusCode::CONFLICT,
            "version_conflict",
            "That version number is not the next one of its family",
        ),
        NoActiveConsent => (
            StatusCode::CONFLICT,
            "no_active_consent",
            "The patient has no active consent in this family",
        ),
        InvalidGenomeId { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_genome_id", "The identifier is malformed or its check character does not match"),
        UnknownPatient { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_patient", "No such patient at that hospital"),
        ObjectChecksumConflict => (StatusCode::CONFLICT, "object_checksum_conflict", "This object is already registered with a different checksum; register a corrected version instead"),
        ObjectUriInUse => (StatusCode::CONFLICT, "object_uri_in_use", "This URI already names another registered object"),
        SampleConflict => (StatusCode::CONFLICT, "sample_conflict", "This sample is already registered with different details"),
        RecontactNotPermitted => (StatusCode::CONFLICT, "recontact_not_permitted", "The patient's current consent does not permit recontact"),
        RecontactRequiresCommittee => (StatusCode::FORBIDDEN, "recontact_requires_committee", "Researchers request recontact through a data-use review committee"),
        DuplicateApprover(_) => (StatusCode::CONFLICT, "duplicate_approver", "Recontact needs two different approvers"),
        InsufficientApprovals => (StatusCode::CONFLICT, "insufficient_approvals", "Recontact needs two approvals before the identity is released"),
        RecontactClosed { .. } => (StatusCode::CONFLICT, "recontact_closed", "This recontact request is closed"),
        VaultIntegrity => (StatusCode::INTERNAL_SERVER_ERROR, "vault_integrity_failure", "The sealed identity failed its integrity check"),
        EnrollmentCodeInvalid => (StatusCode::BAD_REQUEST, "enrollment_code_invalid", "The enrollment code is wrong, expired or already used"),
        InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", "Unknown account or wrong secret"),
        RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests; wait before trying again"),
        ProofUnavailable => (StatusCode::UNPROCESSABLE_ENTITY, "proof_unavailable", "The log has no such index or tree size"),
        Access(refusal, _) => refusal_parts(*refusal),
        Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "The database cannot be reached, or cannot take writes now; try again later",
        ),
        Internal(_) | UniqueViolation(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
        ),

    }
}

fn refusal_parts(refusal: AccessRefusal) -> (StatusCode, &'static str, &'static str) {
    use AccessRefusal::*;
    use StatusCode as S;
    match refusal {
        PurposeForbidden => (
            S::UNPROCESSABLE_ENTITY,
            "purpose_forbidden",
            "Policy forbids this purpose (insurance, employment or re-identification)",
        ),
        OrganizationNotVerified => (
            S::FORBIDDEN,
            "organization_not_verified",
            "The governance body has not verified this organization",
        ),
        AttestationMissing => (
            S::FORBIDDEN,
            "attestation_missing",
            "A researcher has no ethics-training attestation",
        ),
        AttestationExpired => (
            S::FORBIDDEN,
            "attestation_expired",
            "A researcher's ethics-training attestation has expired",
        ),
        NotAMember => (
            S::FORBIDDEN,
            "not_a_member",
            "Only members of the application may do this",
        ),
        ApplicationNotApproved => (
            S::CONFLICT,
            "application_not_approved",
            "The application is not approved",
        ),
        ApplicationDecided => (
            S::CONFLICT,
            "application_decided",
            "The application has already been decided",
        ),
        ConflictOfInterest => (
            S::CONFLICT,
            "conflict_of_interest",
            "A reviewer cannot vote on an application of their own organization",
        ),
        ConditionsRequired => (
            S::UNPROCESSABLE_ENTITY,
            "conditions_required",
            "The datasets require conditions this vote does not carry",
        ),
        AgreementTextMissing => (
            S::CONFLICT,
            "agreement_text_missing",
            "No data-use agreement text has been published",
        ),
        AgreementTextMismatch => (
            S::CONFLICT,
            "agreement_text_mismatch",
            "The hash does not match the current agreement text",
        ),
        AgreementNotAccepted => (
            S::CONFLICT,
            "agreement_not_accepted",
            "Every member must accept the data-use agreement first",
        ),
        AgreementOutdated => (
            S::CONFLICT,
            "agreement_outdated",
            "A member accepted an older agreement text; the current one must be accepted",
        ),
        AgreementSuspended => (
            S::CONFLICT,
            "agreement_suspended",
            "The data-use agreement is suspended",
        ),
        AgreementRevoked => (
            S::CONFLICT,
            "agreement_revoked",
            "The data-use agreement is revoked",
        ),
        AgreementExpired => (
            S::CONFLICT,
            "agreement_expired",
            "The data-use agreement has expired",
        ),
        AgreementNotStarted => (
            S::CONFLICT,
            "agreement_not_started",
            "The agreed period of use has not begun",
        ),
        CohortBelowMinimum => (
            S::CONFLICT,
            "cohort_below_minimum",
            "Fewer patients consent to this use than the minimum cohort size",
        ),
        UnknownAudience => (
            S::UNPROCESSABLE_ENTITY,
            "unknown_audience",
            "No such genome store or research environment",
        ),
        HandleInvalid => (
            S::UNAUTHORIZED,
            "handle_invalid",
            "The dataset handle is not one this service issued",
        ),
        HandleExpired => (
            S::UNAUTHORIZED,
            "handle_expired",
            "The dataset handle has expired",
        ),
        HandleWrongAudience => (
            S::FORBIDDEN,
            "handle_wrong_audience",
            "The dataset handle was issued to another genome store",
        ),
        HandleRevoked => (
            S::FORBIDDEN,
            "handle_revoked",
            "The agreement behind this handle is suspended, revoked or expired",
        ),
    }
}
