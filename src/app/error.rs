//! What an action can answer instead of its result.
//!
//! When to use what:
//! - a field of a command is wrong: [`AppError::Validation`] (or
//!   [`AppError::field`]), naming every offending field;
//! - policy or a gate refuses: the refusal's own variant, or
//!   [`AppError::Access`] with an [`AccessRefusal`] for the data-access gate;
//! - the caller may not learn that something exists: [`AppError::NotFound`],
//!   exactly as for something that does not exist;
//! - anything unexpected (a corrupt row, a failed signature): use
//!   [`AppError::internal`]; the cause is logged, never shown.
//!
//! No HTTP here: `api::problem` holds the one table from these errors to
//! RFC 9457 problem documents, and the pages render them their own way.

use crate::consent::document::FieldProblem;
use std::fmt;

#[derive(Debug)]
pub enum AppError {
    /// A field is wrong. Names every offending field.
    Validation(Vec<FieldProblem>),
    /// The idempotency key was used before with a different request.
    IdempotencyKeyReused,
    /// The caller has not identified themselves.
    MissingToken,
    /// Authenticated, but policy denies the action. Never used where the
    /// refusal would reveal that a resource exists; see `NotFound`.
    Forbidden,
    /// Does not exist, or exists but the caller may not know it does.
    NotFound,
    /// The named document version does not exist.
    UnknownDocumentVersion,
    /// The document version exists but is a draft or retired.
    DocumentVersionNotActive { status: &'static str },
    /// Published versions never change.
    VersionImmutable,
    /// The version to create is not the next number of its family.
    VersionConflict(String),
    /// A change or withdrawal for a patient with no active consent.
    NoActiveConsent,
    /// A genome or project identifier is malformed or its check character
    /// does not match (a typo or two swapped characters).
    InvalidGenomeId { field: String },
    /// No such patient at the named hospital (or not one the caller may
    /// address).
    UnknownPatient { field: &'static str },
    /// An object of that name (or URI) exists with another checksum.
    ObjectChecksumConflict,
    /// The URI already names another registered object.
    ObjectUriInUse,
    /// The sample is already registered with different details.
    SampleConflict,
    /// The patient's current consent does not permit recontact.
    RecontactNotPermitted,
    /// Researchers ask for recontact through a review committee.
    RecontactRequiresCommittee,
    /// The same person cannot approve twice, nor approve their own request.
    DuplicateApprover(&'static str),
    /// Unsealing needs two approvals first.
    InsufficientApprovals,
    /// The request is rejected or already unsealed.
    RecontactClosed { state: String },
    /// A sealed identity failed authentication (tampering). Logged.
    VaultIntegrity,
    /// The enrollment code is wrong, expired or already used (one answer
    /// for all three, so codes cannot be probed).
    EnrollmentCodeInvalid,
    /// Unknown patient account or wrong secret.
    InvalidCredentials,
    /// Too many attempts from this client or member; the seconds until its
    /// window ends.
    RateLimited { retry_after_seconds: u64 },
    /// A proof was asked for sizes or an index the log does not have.
    ProofUnavailable,
    /// A data-access refusal (applications, agreements, releases, handles),
    /// with an optional detail naming what to fix.
    Access(AccessRefusal, Option<String>),
    /// The database is unreachable: worth a retry.
    Unavailable,
    /// A unique constraint refused a write (a retried or racing request).
    /// Actions that rely on the database to detect duplicates match on
    /// this; anywhere else it is internal.
    UniqueViolation(String),
    /// Logged with the request ID, never shown.
    Internal(String),
}

/// Why a data-access step was refused. Each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessRefusal {
    PurposeForbidden,
    OrganizationNotVerified,
    AttestationMissing,
    AttestationExpired,
    NotAMember,
    ApplicationNotApproved,
    ApplicationDecided,
    ConflictOfInterest,
    ConditionsRequired,
    AgreementTextMissing,
    AgreementTextMismatch,
    AgreementNotAccepted,
    AgreementOutdated,
    AgreementSuspended,
    AgreementRevoked,
    AgreementExpired,
    AgreementNotStarted,
    CohortBelowMinimum,
    UnknownAudience,
    HandleInvalid,
    HandleExpired,
    HandleWrongAudience,
    HandleRevoked,
}

impl AccessRefusal {
    /// Every refusal, for the API description's catalogue of codes.
    pub const ALL: [AccessRefusal; 23] = {
        use AccessRefusal::*;
        [
            PurposeForbidden,
            OrganizationNotVerified,
            AttestationMissing,
            AttestationExpired,
            NotAMember,
            ApplicationNotApproved,
            ApplicationDecided,
            ConflictOfInterest,
            ConditionsRequired,
            AgreementTextMissing,
            AgreementTextMismatch,
            AgreementNotAccepted,
            AgreementOutdated,
            AgreementSuspended,
            AgreementRevoked,
            AgreementExpired,
            AgreementNotStarted,
            CohortBelowMinimum,
            UnknownAudience,
            HandleInvalid,
            HandleExpired,
            HandleWrongAudience,
            HandleRevoked,
        ]
    };
}

impl AppError {
    pub fn refused(refusal: AccessRefusal, detail: impl Into<String>) -> Self {
        AppError::Access(refusal, Some(detail.into()))
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation(vec![FieldProblem::new(field, message)])
    }

    pub fn internal(cause: impl fmt::Display) -> Self {
        AppError::Internal(cause.to_string())
    }

    /// `Ok` when nothing was found wrong, else every problem at once.
    pub fn unless_problems(problems: Vec<FieldProblem>) -> Result<(), Self> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(problems))
        }
    }

    /// What the caller can do about it, in words, where there is more to
    /// say than the refusal's title.
    pub fn detail(&self) -> Option<String> {
        use AppError::*;
        match self {
            DocumentVersionNotActive { status } => Some(format!("the version is {status}")),
            VersionConflict(d) => Some(d.clone()),
            DuplicateApprover(d) => Some((*d).to_owned()),
            RecontactClosed { state } => Some(format!("the request is {state}")),
            Access(_, detail) => detail.clone(),
            RateLimited {
                retry_after_seconds,
            } => Some(format!("try again in {retry_after_seconds} s")),
            _ => None,
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Internal(cause) | AppError::UniqueViolation(cause) => f.write_str(cause),
            AppError::Access(refusal, detail) => match detail {
                Some(d) => write!(f, "{refusal:?}: {d}"),
                None => write!(f, "{refusal:?}"),
            },
            other => match other.detail() {
                Some(d) => write!(f, "{other:?}: {d}"),
                None => write!(f, "{other:?}"),
            },
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                AppError::UniqueViolation(format!("database: {}", info.message()))
            }
            // The storage answers but cannot write (a full disk, a read-only
            // file or standby): worth a retry, and nothing was written.
            Error::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, info) => {
                tracing::warn!(cause = %info.message(), "the database refuses writes");
                AppError::Unavailable
            }
            Error::DatabaseError(_, info) if storage_refuses_writes(info.message()) => {
                tracing::warn!(cause = %info.message(), "the database refuses writes");
                AppError::Unavailable
            }
            // The connection itself is gone: worth a retry, as when the pool
            // has none to give.
            lost if crate::db::connection_lost(&lost) => {
                tracing::warn!(cause = %lost, "database connection lost");
                AppError::Unavailable
            }
            other => AppError::Internal(format!("database: {other}")),
        }
    }
}

/// Whether a database error says the storage cannot take writes now, as
/// SQLite (`SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_READONLY`) and PostgreSQL
/// (`disk_full`, `read_only_sql_transaction`) word it.
pub fn storage_refuses_writes(message: &str) -> bool {
    [
        "database or disk is full",
        "disk I/O error",
        "attempt to write a readonly database",
        "No space left on device",
        "could not extend file",
        "in a read-only transaction",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        tracing::warn!(cause = %e, "database pool unavailable");
        AppError::Unavailable
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use diesel::{Connection, RunQueryDsl, SqliteConnection};

    /// Storage that answers but cannot write is `Unavailable` (503, retry),
    /// never an internal error: SQLite's own refusals, produced for real.
    #[test]
    fn sqlite_that_cannot_write_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.db");
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        diesel::sql_query("CREATE TABLE t (x TEXT)")
            .execute(&mut conn)
            .unwrap();
        diesel::sql_query("PRAGMA max_page_count = 4")
            .execute(&mut conn)
            .unwrap();
        let full = (0..100)
            .find_map(|_| {
                diesel::sql_query("INSERT INTO t VALUES (hex(randomblob(2000)))")
                    .execute(&mut conn)
                    .err()
            })
            .unwrap();
        assert!(matches!(AppError::from(full), AppError::Unavailable));
        diesel::sql_query("PRAGMA query_only = 1")
            .execute(&mut conn)
            .unwrap();
        let read_only = diesel::sql_query("INSERT INTO t VALUES ('x')")
            .execute(&mut conn)
            .unwrap_err();
        assert!(matches!(AppError::from(read_only), AppError::Unavailable));
        let other = diesel::sql_query("INSERT INTO missing VALUES (1)")
            .execute(&mut conn)
            .unwrap_err();
        assert!(matches!(AppError::from(other), AppError::Internal(_)));
    }
}
