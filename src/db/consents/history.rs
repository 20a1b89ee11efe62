//! Consent events as stored, and read back per patient or per page of a
//! cohort.

use super::*;

pub fn insert_event(
    conn: &mut DbConnection,
    row: &EventRow,
    decisions: &[(ScopeItemKey, Decision)],
) -> Result<(), DieselError> {
    let decisions = encode_decisions(decisions);
    db_run!(conn, c => diesel::insert_into(events::table)
        .values((row, events::decisions.eq(&decisions)))
        .execute(c))?;
    Ok(())
}

type Decisions = Vec<(ScopeItemKey, Decision)>;

/// An event's item decisions as its row stores them: a JSON object of item
/// key to `permit` or `deny`, keys in order (decision 0015). Item keys are
/// lowercase ASCII, letters, digits and `_` (`ScopeItemKey::parse`), so
/// nothing needs escaping.
pub fn encode_decisions(decisions: &[(ScopeItemKey, Decision)]) -> String {
    let mut sorted: Vec<_> = decisions.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let members: Vec<String> = sorted
        .iter()
        .map(|(key, decision)| format!("\"{}\":\"{}\"", key.as_str(), decision.as_str()))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// The decisions of an event row; the database may have written the
/// object with other spacing (the migration that introduced the column).
/// Borrowed strings: nothing stored needs unescaping, and a release decodes
/// a million of these.
fn decode_decisions(stored: &str) -> Result<Decisions, DieselError> {
    let map: BTreeMap<&str, &str> =
        serde_json::from_str(stored).map_err(|_| corrupt("event decisions"))?;
    map.into_iter()
        .map(|(key, decision)| {
            Ok((
                ScopeItemKey::parse(key).map_err(|_| corrupt("item key"))?,
                Decision::parse(decision).ok_or_else(|| corrupt("decision"))?,
            ))
        })
        .collect()
}

pub(super) fn assemble(rows: Vec<(EventRow, String)>) -> Result<Vec<StoredEvent>, DieselError> {
    rows.into_iter()
        .map(|(row, decisions)| {
            let version = row
                .document_version_id
                .parse::<crate::consent::DocumentVersionId>()
                .map_err(|_| corrupt("document version"))?
                .number;
            Ok(StoredEvent {
                event: ConsentEvent {
                    id: row.id.clone(),
                    kind: EventKind::parse(&row.kind).ok_or_else(|| corrupt("event kind"))?,
                    version,
                    signed_at: utc(row.signed_at),
                    recorded_at: utc(row.recorded_at),
                    decisions: decode_decisions(&decisions)?,
                    by_proxy: row.signer_kind == PROXY,
                },
                row,
            })
        })
        .collect()
}

/// All events of one patient in one family, in the order they took effect.
pub fn events_for_patient(
    conn: &mut DbConnection,
    pseudonym: &str,
    family: DocumentFamily,
) -> Result<Vec<StoredEvent>, DieselError> {
    let rows = db_run!(conn, c => events::table
        .filter(events::patient_pseudonym.eq(pseudonym))
        .filter(events::family.eq(family.as_str()))
        .order((events::signed_at, events::recorded_at, events::id))
        .select((EventRow::as_select(), events::decisions))
        .load(c))?;
    assemble(rows)
}

/// Every event of the named patients in one family, grouped by patient in
/// the order they took effect. Used to check a whole page of a cohort at
/// once: one index lookup per patient, and only the columns derivation
/// needs.
pub fn events_for_patients(
    conn: &mut DbConnection,
    pseudonyms: &[String],
    family: DocumentFamily,
) -> Result<BTreeMap<String, Vec<ConsentEvent>>, DieselError> {
    type Lean = (
        String,
        String,
        String,
        String,
        NaiveDateTime,
        NaiveDateTime,
        String,
        String,
    );
    let mut grouped: BTreeMap<String, Vec<ConsentEvent>> = BTreeMap::new();
    if pseudonyms.is_empty() {
        return Ok(grouped);
    }
    let rows: Vec<Lean> = db_run!(conn, c => events::table
        .filter(events::patient_pseudonym.eq_any(pseudonyms))
        .filter(events::family.eq(family.as_str()))
        .order((events::patient_pseudonym, events::signed_at, events::recorded_at, events::id))
        .select((events::patient_pseudonym, events::id, events::kind, events::document_version_id, events::signed_at, events::recorded_at, events::decisions, events::signer_kind))
        .load(c))?;
    for (patient, id, kind, version, signed_at, recorded_at, decisions, signer) in rows {
        let event = ConsentEvent {
            kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind"))?,
            version: version
                .parse::<crate::consent::DocumentVersionId>()
                .map_err(|_| corrupt("document version"))?
                .number,
            signed_at: utc(signed_at),
            recorded_at: utc(recorded_at),
            decisions: decode_decisions(&decisions)?,
            id,
            by_proxy: signer == PROXY,
        };
        grouped.entry(patient).or_default().push(event);
    }
    Ok(grouped)
}
