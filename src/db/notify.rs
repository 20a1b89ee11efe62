//! Notification endpoints (webhooks, NATS) and per-endpoint delivery state.

use super::schema::{notification_deliveries as deliveries, notification_endpoints as endpoints};
use super::{write_transaction, DbConnection};
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use serde::Serialize;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = endpoints)]
pub struct EndpointRow {
    pub id: String,
    pub kind: String,
    pub patient_pseudonym: Option<String>,
    pub hospital_org: Option<String>,
    pub target: String,
    pub key_version: Option<i32>,
    pub nonce: Option<Vec<u8>>,
    pub ciphertext: Option<Vec<u8>>,
    pub created_at: NaiveDateTime,
    pub disabled_at: Option<NaiveDateTime>,
    /// Set on an application's webhook, which hears that application's
    /// recall notices and nothing else.
    pub application_id: Option<String>,
    /// An email endpoint's wanted kinds of access, comma-separated
    /// ([`crate::notify::NoticeKind`]).
    pub email_kinds: Option<String>,
}

/// Where one delivery of a notification to one endpoint stands. Stored as
/// its text code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered; retried with backoff until it is, or is dead.
    Pending,
    Delivered,
    /// Given up after `notify.max_attempts`, or its endpoint was removed.
    Dead,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// Whose notifications an endpoint receives.
#[derive(Debug, Clone)]
pub enum EndpointOwner {
    /// One patient's (by pseudonym).
    Patient(String),
    /// Every patient's of a hospital, through its patient app.
    Hospital(String),
    /// The recall notices of one data-use application, for its members.
    Application(String),
}

impl EndpointOwner {
    pub fn owns(&self, endpoint: &EndpointRow) -> bool {
        let (patient, hospital, application) = (
            endpoint.patient_pseudonym.as_deref(),
            endpoint.hospital_org.as_deref(),
            endpoint.application_id.as_deref(),
        );
        match self {
            EndpointOwner::Patient(p) => patient == Some(p.as_str()),
            EndpointOwner::Hospital(h) => patient.is_none() && hospital == Some(h.as_str()),
            EndpointOwner::Application(a) => application == Some(a.as_str()),
        }
    }
}

pub fn insert_endpoint(conn: &mut DbConnection, row: &EndpointRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(endpoints::table).values(row).execute(c))?;
    Ok(())
}

pub fn find_endpoint(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<EndpointRow>, DieselError> {
    Ok(find_endpoints(conn, &[id.to_owned()])?.pop())
}

/// The endpoints with these ids (those that exist).
pub fn find_endpoints(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<Vec<EndpointRow>, DieselError> {
    db_run!(conn, c => endpoints::table
        .filter(endpoints::id.eq_any(ids))
        .select(EndpointRow::as_select())
        .load(c))
}

/// Active endpoints of an owner, oldest first.
pub fn endpoints_owned_by(
    conn: &mut DbConnection,
    owner: &EndpointOwner,
) -> Result<Vec<EndpointRow>, DieselError> {
    db_run!(conn, c => {
        // Webhooks only: a patient's email endpoint is their preference,
        // not one of their webhooks.
        let query = endpoints::table
            .filter(endpoints::disabled_at.is_null())
            .filter(endpoints::kind.eq("webhook"))
            .into_boxed();
        let query = match owner {
            EndpointOwner::Patient(p) => query.filter(endpoints::patient_pseudonym.eq(p.clone())),
            EndpointOwner::Hospital(h) => query
                .filter(endpoints::hospital_org.eq(h.clone()))
                .filter(endpoints::patient_pseudonym.is_null()),
            EndpointOwner::Application(a) => {
                query.filter(endpoints::application_id.eq(a.clone()))
            }
        };
        query.order(endpoints::created_at).select(EndpointRow::as_select()).load(c)
    })
}

/// The id of a new email endpoint: the prefix tells a dispatcher without
/// SMTP to leave its deliveries alone (`claim_due`).
pub fn email_endpoint_id() -> String {
    format!("email:{}", uuid::Uuid::new_v4())
}

/// A patient's active email endpoint, if they asked for email.
pub fn email_endpoint(
    conn: &mut DbConnection,
    patient: &str,
) -> Result<Option<EndpointRow>, DieselError> {
    db_run!(conn, c => endpoints::table
        .filter(endpoints::disabled_at.is_null())
        .filter(endpoints::kind.eq("email"))
        .filter(endpoints::patient_pseudonym.eq(patient))
        .select(EndpointRow::as_select())
        .first(c)
        .optional())
}

pub fn disable_endpoint(
    conn: &mut DbConnection,
    id: &str,
    now: NaiveDateTime,
) -> Result<bool, DieselError> {
    let n = db_run!(conn, c => diesel::update(endpoints::table.find(id))
        .filter(endpoints::disabled_at.is_null())
        .set(endpoints::disabled_at.eq(now))
        .execute(c))?;
    Ok(n == 1)
}

/// The id of the endpoint that publishes to a NATS subject.
pub fn nats_endpoint_id(subject: &str) -> String {
    format!("nats:{subject}")
}

/// Makes the NATS endpoint match an instance configured to publish to
/// `subject`: that subject's endpoint active, every other NATS endpoint
/// disabled. Run at start-up; instances starting together agree because
/// the id is derived from the subject.
///
/// An instance without NATS (`subject` is `None`) changes nothing: it does
/// not speak for the instances that publish, and its dispatcher leaves NATS
/// deliveries to them (`claim_due`).
pub fn sync_nats_endpoint(
    conn: &mut DbConnection,
    subject: Option<&str>,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    let Some(subject) = subject else {
        return Ok(());
    };
    let id = nats_endpoint_id(subject);
    write_transaction(conn, |conn| {
        db_run!(conn, c => {
            let others = endpoints::table
                .filter(endpoints::kind.eq("nats"))
                .filter(endpoints::disabled_at.is_null())
                .filter(endpoints::id.ne(&id));
            diesel::update(others).set(endpoints::disabled_at.eq(now)).execute(c)?;
            diesel::insert_into(endpoints::table)
                .values(&EndpointRow {
                    id: id.clone(),
                    kind: "nats".into(),
                    patient_pseudonym: None,
                    hospital_org: None,
                    target: subject.to_owned(),
                    key_version: None,
                    nonce: None,
                    ciphertext: None,
                    created_at: now,
                    disabled_at: None,
                    application_id: None,
                    email_kinds: None,
                })
                .on_conflict_do_nothing()
                .execute(c)?;
            diesel::update(endpoints::table.find(&id))
                .set(endpoints::disabled_at.eq(None::<NaiveDateTime>))
                .execute(c)?;
            Ok::<_, DieselError>(())
        })
    })
}

/// A delivery a dispatcher holds until its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub endpoint_id: String,
    pub idx: i64,
    pub attempts: i32,
}

/// Claims up to `limit` due deliveries until `lease_until`. Another
/// dispatcher skips them; if this one dies, they fall due again when the
/// lease ends. A dispatcher without NATS (`with_nats` false) claims only
/// webhook deliveries, so it never fails a NATS delivery it cannot make;
/// one without SMTP (`with_email` false) leaves email deliveries alike.
pub fn claim_due(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
    (with_nats, with_email): (bool, bool),
) -> Result<Vec<Claim>, DieselError> {
    use diesel::sql_types::Bool;
    // Every NATS endpoint's id starts so (`nats_endpoint_id`), and every
    // email endpoint's so (`email_endpoint_id`).
    const NATS_IDS: &str = "nats:%";
    const EMAIL_IDS: &str = "email:%";
    use diesel::sql_types::{BigInt, Integer, Text, Timestamp};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        endpoint_id: String,
        #[diesel(sql_type = BigInt)]
        idx: i64,
        #[diesel(sql_type = Integer)]
        attempts: i32,
    }
    let rows: Vec<Row> = match conn {
        DbConnection::Postgresql(c) => super::prepared::PgStatement::new(
            "UPDATE notification_deliveries d SET next_attempt_at = $1 \
             FROM (SELECT endpoint_id, idx FROM notification_deliveries \
                   WHERE state = 'pending' AND next_attempt_at <= $2 \
                     AND ($4 OR endpoint_id NOT LIKE $5) \
                     AND ($6 OR endpoint_id NOT LIKE $7) \
                   ORDER BY next_attempt_at, idx LIMIT $3 FOR UPDATE SKIP LOCKED) due \
             WHERE d.endpoint_id = due.endpoint_id AND d.idx = due.idx \
             RETURNING d.endpoint_id, d.idx, d.attempts",
        )
        .bind::<Timestamp, _>(lease_until)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .bind::<Bool, _>(with_nats)
        .bind::<Text, _>(NATS_IDS)
        .bind::<Bool, _>(with_email)
        .bind::<Text, _>(EMAIL_IDS)
        .load(c)?,
        DbConnection::Sqlite(_) => write_transaction(conn, |conn| {
            let DbConnection::Sqlite(c) = conn else {
                return Ok(Vec::new());
            };
            let mut due = deliveries::table
                .filter(deliveries::state.eq(DeliveryState::Pending.as_str()))
                .filter(deliveries::next_attempt_at.le(now))
                .into_boxed();
            if !with_nats {
                due = due.filter(deliveries::endpoint_id.not_like(NATS_IDS));
            }
            if !with_email {
                due = due.filter(deliveries::endpoint_id.not_like(EMAIL_IDS));
            }
            let due: Vec<(String, i64, i32)> = due
                .order((deliveries::next_attempt_at, deliveries::idx))
                .limit(limit)
                .select((
                    deliveries::endpoint_id,
                    deliveries::idx,
                    deliveries::attempts,
                ))
                .load(c)?;
            for (endpoint, idx, _) in &due {
                diesel::update(deliveries::table.find((endpoint, idx)))
                    .set(deliveries::next_attempt_at.eq(lease_until))
                    .execute(c)?;
            }
            Ok::<_, DieselError>(
                due.into_iter()
                    .map(|(endpoint_id, idx, attempts)| Row {
                        endpoint_id,
                        idx,
                        attempts,
                    })
                    .collect(),
            )
        })?,
    };
    let mut claims: Vec<Claim> = rows
        .into_iter()
        .map(|r| Claim {
            endpoint_id: r.endpoint_id,
            idx: r.idx,
            attempts: r.attempts,
        })
        .collect();
    claims.sort_by(|a, b| (a.idx, &a.endpoint_id).cmp(&(b.idx, &b.endpoint_id)));
    Ok(claims)
}

/// What is still on its way to patients, for the operators' metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Entries appended but not yet integrated: no receipt exists yet.
    pub awaiting_integration: i64,
    /// Deliveries neither delivered nor dead-lettered.
    pub pending_deliveries: i64,
    /// How long the most overdue pending delivery has been due, in
    /// seconds; 0 when none is overdue. Grows when no dispatcher runs.
    pub overdue_seconds: i64,
}

/// Reads the backlog at `now`. Each figure is one indexed count or minimum.
pub fn backlog(conn: &mut DbConnection, now: NaiveDateTime) -> Result<Backlog, DieselError> {
    use super::schema::notification_outbox as outbox;
    let awaiting_integration: i64 = db_run!(conn, c => outbox::table.count().get_result(c))?;
    let pending = deliveries::table.filter(deliveries::state.eq(DeliveryState::Pending.as_str()));
    let pending_deliveries: i64 = db_run!(conn, c => pending.count().get_result(c))?;
    let oldest_due: Option<NaiveDateTime> = db_run!(conn, c => pending
        .filter(deliveries::next_attempt_at.le(now))
        .select(diesel::dsl::min(deliveries::next_attempt_at))
        .first(c))?;
    Ok(Backlog {
        awaiting_integration,
        pending_deliveries,
        overdue_seconds: oldest_due.map_or(0, |due| (now - due).num_seconds().max(0)),
    })
}

/// Gives claims back before their lease ends, unattempted: they fall due at
/// `due_at`. For a batch that failed before sending anything, so its
/// deliveries wait a short pause rather than the whole lease.
pub fn release_claims(
    conn: &mut DbConnection,
    claims: &[Claim],
    due_at: NaiveDateTime,
) -> Result<(), DieselError> {
    write_transaction(conn, |conn| {
        for claim in claims {
            db_run!(conn, c => diesel::update(
                deliveries::table
                    .find((&claim.endpoint_id, claim.idx))
                    .filter(deliveries::state.eq(DeliveryState::Pending.as_str())),
            )
            .set(deliveries::next_attempt_at.eq(due_at))
            .execute(c))?;
        }
        Ok(())
    })
}

pub fn mark_delivered(
    conn: &mut DbConnection,
    claim: &Claim,
    now: NaiveDateTime,
) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(deliveries::table.find((&claim.endpoint_id, claim.idx)))
        .set((
            deliveries::state.eq(DeliveryState::Delivered.as_str()),
            deliveries::attempts.eq(claim.attempts + 1),
            deliveries::delivered_at.eq(Some(now)),
            deliveries::last_error.eq(None::<String>),
        ))
        .execute(c))?;
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or dead-lettered when
/// that is `None`.
pub fn mark_failed(
    conn: &mut DbConnection,
    claim: &Claim,
    error: &str,
    retry_at: Option<NaiveDateTime>,
) -> Result<(), DieselError> {
    let state = if retry_at.is_some() {
        DeliveryState::Pending
    } else {
        DeliveryState::Dead
    }
    .as_str();
    let mut error = error.to_owned();
    error.truncate(300);
    db_run!(conn, c => {
        let target = deliveries::table.find((&claim.endpoint_id, claim.idx));
        match retry_at {
            Some(at) => diesel::update(target)
                .set((
                    deliveries::state.eq(state),
                    deliveries::attempts.eq(claim.attempts + 1),
                    deliveries::last_error.eq(Some(&error)),
                    deliveries::next_attempt_at.eq(at),
                ))
                .execute(c),
            None => diesel::update(target)
                .set((
                    deliveries::state.eq(state),
                    deliveries::attempts.eq(claim.attempts + 1),
                    deliveries::last_error.eq(Some(&error)),
                ))
                .execute(c),
        }
    })?;
    Ok(())
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub endpoint_id: String,
    pub idx: i64,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub delivered_at: Option<NaiveDateTime>,
}

/// An endpoint's deliveries, newest first; optionally one state only.
pub fn deliveries_of(
    conn: &mut DbConnection,
    endpoint_id: &str,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, DieselError> {
    db_run!(conn, c => {
        let mut query = deliveries::table
            .filter(deliveries::endpoint_id.eq(endpoint_id.to_owned()))
            .into_boxed();
        if let Some(state) = state {
            query = query.filter(deliveries::state.eq(state.to_owned()));
        }
        query
            .order(deliveries::idx.desc())
            .limit(limit)
            .select(DeliveryRow::as_select())
            .load(c)
    })
}
