//! Releases, their manifests and the visas issued under a use.

use super::*;

pub fn insert_release(conn: &mut DbConnection, row: &ReleaseRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(releases::table).values(row).execute(c))?;
    Ok(())
}

/// Fills in a release's counts and provenance once its manifest is written.
pub fn finish_release(conn: &mut DbConnection, row: &ReleaseRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::update(releases::table.find(&row.id))
        .set((
            releases::included.eq(row.included),
            releases::excluded.eq(row.excluded),
            releases::provenance.eq(&row.provenance),
            releases::excluded_by_reason.eq(&row.excluded_by_reason),
        ))
        .execute(c))?;
    Ok(())
}

/// Writes a page of a release's manifest. On PostgreSQL the page goes in
/// by binary `COPY` (a release writes up to millions of rows).
pub fn insert_release_samples(
    conn: &mut DbConnection,
    rows: &[ReleaseSampleRow],
) -> Result<(), DieselError> {
    match conn {
        DbConnection::Postgresql(c) => {
            diesel::copy_from(release_samples::table)
                .from_insertable(rows)
                .execute(c)?;
        }
        DbConnection::Sqlite(_) => {
            insert_many!(conn, release_samples::table, rows);
        }
    }
    Ok(())
}

pub fn find_release(conn: &mut DbConnection, id: &str) -> Result<Option<ReleaseRow>, DieselError> {
    db_run!(conn, c => releases::table
        .find(id)
        .select(ReleaseRow::as_select())
        .first(c)
        .optional())
}

pub fn releases_of(
    conn: &mut DbConnection,
    application_id: &str,
) -> Result<Vec<ReleaseRow>, DieselError> {
    db_run!(conn, c => releases::table
        .filter(releases::application_id.eq(application_id))
        .order((releases::released_at, releases::id))
        .select(ReleaseRow::as_select())
        .load(c))
}

/// The most manifest rows one window of a page read is sized to cover.
const MAX_WINDOW_ROWS: i64 = 100_000;

/// The first `limit` manifest rows of `release` after position `after`;
/// with `included_only`, the first `limit` included ones.
///
/// Every read is a bounded range of positions, with a limit. A fresh release
/// is never in the planner's statistics, and for an open range (`position >
/// after … LIMIT n`) PostgreSQL read every later row of the release and
/// sorted them: 15 ms a page at 100,000 rows instead of 0.4 ms. Positions
/// are spread evenly over their span (decision 0030), so a window's width
/// follows from how many rows it should hold: the rows still missing,
/// scaled by the share of included rows seen so far.
pub fn release_page(
    conn: &mut DbConnection,
    release: &ReleaseRow,
    after: i64,
    limit: i64,
    included_only: bool,
) -> Result<Vec<ReleaseSampleRow>, DieselError> {
    let spacing = spacing(release.included + release.excluded);
    let mut rows: Vec<ReleaseSampleRow> = Vec::new();
    let mut from = after;
    while (rows.len() as i64) < limit && from < POSITION_SPAN {
        let missing = limit - rows.len() as i64;
        // How many manifest rows the positions read so far held, about.
        let looked_at = (from - after) / spacing;
        let window_rows = if !included_only {
            // A quarter to spare: positions are spread evenly, not exactly.
            missing + missing / 4 + 1
        } else if rows.is_empty() {
            // Nothing included yet: twice what was looked at, at least
            // twice what is missing.
            (2 * looked_at).max(2 * missing)
        } else {
            // The density seen so far, with a quarter to spare.
            let per_row = looked_at.max(1) as f64 / rows.len() as f64;
            (missing as f64 * per_row * 1.25).ceil() as i64
        };
        let window = window_rows
            .clamp(missing, MAX_WINDOW_ROWS)
            .saturating_mul(spacing);
        let through = from.saturating_add(window).min(POSITION_SPAN);
        // Two fixed queries rather than one boxed one: diesel prepares only
        // queries whose shape is known at compile time.
        let found: Vec<ReleaseSampleRow> = db_run!(conn, c => {
            let window = release_samples::table
                .filter(release_samples::release_id.eq(&release.id))
                .filter(release_samples::position.gt(from))
                .filter(release_samples::position.le(through))
                .order(release_samples::position)
                .limit(missing)
                .select(ReleaseSampleRow::as_select());
            if included_only {
                window.filter(release_samples::included.eq(true)).load(c)
            } else {
                window.load(c)
            }
        })?;
        from = match found.last() {
            // The window held more than was missing: go on after the last
            // row taken, not past rows left unread.
            Some(last) if found.len() as i64 == missing => last.position,
            _ => through,
        };
        rows.extend(found);
    }
    Ok(rows)
}

pub fn record_visa(conn: &mut DbConnection, row: &VisaIssuanceRow) -> Result<(), DieselError> {
    db_run!(conn, c => diesel::insert_into(visa_issuances::table).values(row).execute(c))?;
    Ok(())
}

/// The visas issued for an application, oldest first.
pub fn visas_of(
    conn: &mut DbConnection,
    application_id: &str,
) -> Result<Vec<VisaIssuanceRow>, DieselError> {
    db_run!(conn, c => visa_issuances::table
        .filter(visa_issuances::application_id.eq(application_id))
        .order((visa_issuances::issued_at, visa_issuances::jti))
        .select(VisaIssuanceRow::as_select())
        .load(c))
}
