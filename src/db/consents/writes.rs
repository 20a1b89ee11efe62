//! Recording an event: the patient on first sight, the event, its
//! decisions and the sealed identity, in as few round trips as each backend
//! allows.

use super::*;

/// The event columns in the order [`with_event_binds`] binds them.
const EVENT_COLUMNS: &str = "id, patient_pseudonym, family, document_version_id, kind, signer_kind, proxy_relationship, \
     explained_by, signed_at, recorded_at, form_hash, hospital_org, recorded_by, idempotency_key, request_hash, decisions";

/// [`EVENT_COLUMNS`] as the `e` side of a join.
pub(super) static JOINED_EVENT_COLUMNS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        EVENT_COLUMNS
            .split(", ")
            .map(|column| format!("e.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    });

type PgQuery<'a> = crate::db::prepared::PgStatement<'a>;

/// `sql` with the event's sixteen columns bound as `$1` … `$16`, the last
/// being its encoded decisions.
fn with_event_binds<'a>(sql: String, row: &'a EventRow, decisions: &'a str) -> PgQuery<'a> {
    use diesel::sql_types::{Nullable, Text, Timestamp};
    crate::db::prepared::PgStatement::new(sql)
        .bind::<Text, _>(&row.id)
        .bind::<Text, _>(&row.patient_pseudonym)
        .bind::<Text, _>(&row.family)
        .bind::<Text, _>(&row.document_version_id)
        .bind::<Text, _>(&row.kind)
        .bind::<Text, _>(&row.signer_kind)
        .bind::<Nullable<Text>, _>(&row.proxy_relationship)
        .bind::<Text, _>(&row.explained_by)
        .bind::<Timestamp, _>(row.signed_at)
        .bind::<Timestamp, _>(row.recorded_at)
        .bind::<Text, _>(&row.form_hash)
        .bind::<Text, _>(&row.hospital_org)
        .bind::<Text, _>(&row.recorded_by)
        .bind::<Text, _>(&row.idempotency_key)
        .bind::<Text, _>(&row.request_hash)
        .bind::<Text, _>(decisions)
}

/// Stores a consent event with its item decisions, registering the patient
/// (and sealing its identity into the vault) on first sight.
///
/// PostgreSQL does it in two statements, the first a data-modifying CTE: on
/// a busy two-core host every round trip saved is throughput. SQLite is
/// in-process and takes the plain statements.
pub fn record_event(
    conn: &mut DbConnection,
    row: &EventRow,
    decisions: &[(ScopeItemKey, Decision)],
    sealed: Option<&crate::pseudonym::vault::Sealed>,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    use diesel::sql_types::{Binary, Integer, Text, Timestamp};
    let DbConnection::Postgresql(c) = conn else {
        ensure_patient(conn, &row.patient_pseudonym, &row.hospital_org, now)?;
        if let Some(sealed) = sealed {
            crate::db::samples::seal_identity(
                conn,
                &row.patient_pseudonym,
                &row.hospital_org,
                sealed,
                now,
            )?;
        }
        return insert_event(conn, row, decisions);
    };
    let now = now.naive_utc();
    match sealed {
        Some(sealed) => {
            crate::db::prepared::PgStatement::new(
                "WITH p AS (INSERT INTO patients (pseudonym, hospital_org, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (pseudonym) DO NOTHING RETURNING pseudonym) \
                 INSERT INTO identity_vault (patient_pseudonym, hospital_org, key_version, nonce, ciphertext, sealed_at) \
                 SELECT pseudonym, $2, $4, $5, $6, $3 FROM p",
            )
            .bind::<Text, _>(&row.patient_pseudonym)
            .bind::<Text, _>(&row.hospital_org)
            .bind::<Timestamp, _>(now)
            .bind::<Integer, _>(i32::try_from(sealed.key_version).unwrap_or(i32::MAX))
            .bind::<Binary, _>(&sealed.nonce)
            .bind::<Binary, _>(&sealed.ciphertext)
            .execute(c)?;
        }
        None => {
            diesel::insert_into(patients::table)
                .values((
                    patients::pseudonym.eq(&row.patient_pseudonym),
                    patients::hospital_org.eq(&row.hospital_org),
                    patients::created_at.eq(now),
                ))
                .on_conflict(patients::pseudonym)
                .do_nothing()
                .execute(c)?;
        }
    }
    let decisions = encode_decisions(decisions);
    with_event_binds(
        format!("INSERT INTO consent_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"),
        row,
        &decisions,
    )
    .execute(c)?;
    Ok(())
}

/// The common case of a grant on PostgreSQL as one self-committing
/// statement: only if the version is active and was in force when signed,
/// and the patient is new, the patient (with its sealed identity), the
/// event with its decisions, its log entry and the enrollment code are
/// written together; otherwise nothing is. Returns whether it wrote.
///
/// A new patient is in no release, so nothing can need recalling; a known
/// patient's grant takes the general path, which checks (decision 0027).
///
/// A `false` or an error is not an answer: the caller falls back to the
/// general path, which says precisely why (and replays retries).
pub fn grant_in_one_statement(
    conn: &mut DbConnection,
    row: &EventRow,
    decisions: &[(ScopeItemKey, Decision)],
    sealed: &crate::pseudonym::vault::Sealed,
    extras: &GrantExtras<'_>,
) -> Result<bool, DieselError> {
    use diesel::sql_types::{Binary, Integer, Text, Timestamp};
    let DbConnection::Postgresql(c) = conn else {
        return Ok(false);
    };
    let entry_at = 20;
    let (code_at, expires_at) = (entry_at + 6, entry_at + 7);
    let sql = format!(
        "WITH ok AS (SELECT 1 FROM document_versions WHERE id = $4 AND status = 'active' AND effective_from <= $9), \
         p AS (INSERT INTO patients (pseudonym, hospital_org, created_at) SELECT $2, $12, $10 WHERE EXISTS (SELECT 1 FROM ok) \
               ON CONFLICT (pseudonym) DO NOTHING RETURNING pseudonym), \
         v AS (INSERT INTO identity_vault (patient_pseudonym, hospital_org, key_version, nonce, ciphertext, sealed_at) \
               SELECT pseudonym, $12, $17, $18, $19, $10 FROM p), \
         e AS (INSERT INTO consent_events ({EVENT_COLUMNS}) \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 WHERE EXISTS (SELECT 1 FROM p) \
               RETURNING id), \
         {} \
         INSERT INTO enrollment_codes (code_hash, patient_pseudonym, issued_by, issued_at, expires_at) \
         SELECT ${code_at}, $2, $13, $10, ${expires_at} FROM e",
        crate::db::ledger::append_cte("l", entry_at, "e"),
    );
    let decisions = encode_decisions(decisions);
    let entry = extras.entry;
    let query = with_event_binds(sql, row, &decisions)
        .bind::<Integer, _>(i32::try_from(sealed.key_version).unwrap_or(i32::MAX))
        .bind::<Binary, _>(&sealed.nonce)
        .bind::<Binary, _>(&sealed.ciphertext)
        .bind::<Binary, _>(entry.to_bytes())
        .bind::<Timestamp, _>(entry.at.naive_utc())
        .bind::<Text, _>(&entry.patient)
        .bind::<Text, _>(&entry.actor.org)
        .bind::<Text, _>(&entry.actor.user)
        .bind::<Text, _>(entry.action.as_str())
        .bind::<Text, _>(extras.code_hash)
        .bind::<Timestamp, _>(extras.code_expires_at);
    Ok(query.execute(c)? == 1)
}

/// What a fast-path grant writes besides the consent: its access-log entry
/// (with outbox row) and the patient's enrollment code.
pub struct GrantExtras<'a> {
    pub entry: &'a crate::ledger::entry::LogEntry,
    pub code_hash: &'a str,
    pub code_expires_at: NaiveDateTime,
}
