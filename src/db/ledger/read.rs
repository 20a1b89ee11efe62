//! Reading integrated entries: by index, by patient, and for auditors.

use super::*;

/// An integrated entry with its tree index.
#[derive(Debug, Clone)]
pub struct IndexedEntry {
    pub idx: u64,
    pub row: EntryRow,
}

/// Integrated entries with indices in `[from, to)`, in tree order.
pub fn entries_between(
    conn: &mut DbConnection,
    from: u64,
    to: u64,
) -> Result<Vec<IndexedEntry>, DieselError> {
    let rows: Vec<(i64, EntryRow)> = db_run!(conn, c => leaves::table
        .inner_join(entries::table)
        .filter(leaves::idx.ge(to_i64(from)))
        .filter(leaves::idx.lt(to_i64(to)))
        .order(leaves::idx)
        .select((leaves::idx, EntryRow::as_select()))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(idx, row)| IndexedEntry {
            idx: idx as u64,
            row,
        })
        .collect())
}

/// Integrated entries at the given indices.
pub fn entries_at(
    conn: &mut DbConnection,
    indices: &[u64],
) -> Result<Vec<IndexedEntry>, DieselError> {
    let wanted: Vec<i64> = indices.iter().map(|i| to_i64(*i)).collect();
    let mut out = Vec::new();
    for chunk in wanted.chunks(CHUNK) {
        let rows: Vec<(i64, EntryRow)> = db_run!(conn, c => leaves::table
            .inner_join(entries::table)
            .filter(leaves::idx.eq_any(chunk))
            .order(leaves::idx)
            .select((leaves::idx, EntryRow::as_select()))
            .load(c))?;
        out.extend(rows.into_iter().map(|(idx, row)| IndexedEntry {
            idx: idx as u64,
            row,
        }));
    }
    Ok(out)
}

/// The tree indices of a patient's entries from index `first` on and below
/// tree size `size`, oldest first, at most `limit` of them.
pub fn patient_indices_from(
    conn: &mut DbConnection,
    pseudonym: &str,
    first: u64,
    size: u64,
    limit: i64,
) -> Result<Vec<u64>, DieselError> {
    let indices: Vec<i64> = db_run!(conn, c => leaves::table
        .inner_join(entries::table)
        .filter(entries::patient_pseudonym.eq(pseudonym))
        .filter(leaves::idx.ge(to_i64(first)))
        .filter(leaves::idx.lt(to_i64(size)))
        .order(leaves::idx)
        .limit(limit)
        .select(leaves::idx)
        .load(c))?;
    Ok(indices.into_iter().map(|i| i as u64).collect())
}

/// A patient's entries, newest first, before arrival number `before`.
/// Entries still waiting for integration have no index yet.
pub fn patient_entries(
    conn: &mut DbConnection,
    pseudonym: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(EntryRow, Option<u64>)>, DieselError> {
    let rows: Vec<(EntryRow, Option<i64>)> = db_run!(conn, c => entries::table
        .left_join(leaves::table)
        .filter(entries::patient_pseudonym.eq(pseudonym))
        .filter(entries::seq.lt(before.unwrap_or(i64::MAX)))
        .order(entries::seq.desc())
        .limit(limit)
        .select((EntryRow::as_select(), leaves::idx.nullable()))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(row, idx)| (row, idx.map(|i| i as u64)))
        .collect())
}

/// Whether `pseudonym` has an entry of `action` recorded at or after
/// `since`: so that what the service tells a patient of its own accord is
/// told once, whichever path noticed it first.
pub fn patient_logged_since(
    conn: &mut DbConnection,
    pseudonym: &str,
    action: LogAction,
    since: DateTime<Utc>,
) -> Result<bool, DieselError> {
    let found: Option<i64> = db_run!(conn, c => entries::table
        .filter(entries::patient_pseudonym.eq(pseudonym))
        .filter(entries::action.eq(action.as_str()))
        .filter(entries::recorded_at.ge(since.naive_utc()))
        .select(entries::seq)
        .first(c)
        .optional())?;
    Ok(found.is_some())
}

/// The auditor's filters; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub org: Option<String>,
    pub user: Option<String>,
    pub action: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

/// Entries matching `filter`, newest first, before arrival number `before`.
pub fn audit_entries(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(EntryRow, Option<u64>)>, DieselError> {
    let rows: Vec<(EntryRow, Option<i64>)> = db_run!(conn, c => {
        let mut query = entries::table
            .left_join(leaves::table)
            .filter(entries::seq.lt(before.unwrap_or(i64::MAX)))
            .into_boxed();
        if let Some(org) = &filter.org {
            query = query.filter(entries::actor_org.eq(org.clone()));
        }
        if let Some(user) = &filter.user {
            query = query.filter(entries::actor_user.eq(user.clone()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(entries::action.eq(action.clone()));
        }
        if let Some(from) = filter.from {
            query = query.filter(entries::recorded_at.ge(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(entries::recorded_at.lt(to));
        }
        query
            .order(entries::seq.desc())
            .limit(limit)
            .select((EntryRow::as_select(), leaves::idx.nullable()))
            .load(c)
    })?;
    Ok(rows
        .into_iter()
        .map(|(row, idx)| (row, idx.map(|i| i as u64)))
        .collect())
}

/// Up to `limit` entries recorded in `[from, to)` after arrival number
/// `after_seq`, in arrival order (screening pages through a period).
pub fn entries_recorded_between(
    conn: &mut DbConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<EntryRow>, DieselError> {
    db_run!(conn, c => entries::table
        .filter(entries::recorded_at.ge(from))
        .filter(entries::recorded_at.lt(to))
        .filter(entries::seq.gt(after_seq))
        .order(entries::seq)
        .limit(limit)
        .select(EntryRow::as_select())
        .load(c))
}

pub fn signed_at(row: &CheckpointRow) -> DateTime<Utc> {
    utc(row.signed_at)
}
