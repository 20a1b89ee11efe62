//! Integration: queued entries get their tree indices, the nodes they
//! complete are stored, a checkpoint is signed and deliveries are queued, in
//! one transaction under the log's lock.

use super::*;

/// What one integration did.
#[derive(Debug, Clone)]
pub struct Integrated {
    /// The tree grew from `from` leaves to `to`.
    pub from: u64,
    pub to: u64,
    pub root: Hash,
    /// The signed checkpoint of size `to`.
    pub note: String,
}

/// The log's current size (the next index).
pub fn size(conn: &mut DbConnection) -> Result<u64, DieselError> {
    let max: Option<i64> =
        db_run!(conn, c => leaves::table.select(diesel::dsl::max(leaves::idx)).first(c))?;
    Ok(max.map_or(0, |m| m as u64 + 1))
}

/// Loads stored nodes by coordinate.
pub fn nodes_at(
    conn: &mut DbConnection,
    wanted: &[(u32, u64)],
) -> Result<HashMap<(u32, u64), Hash>, DieselError> {
    let mut found = HashMap::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(found);
    }
    let rows: Vec<(i16, i64, Vec<u8>)> = match conn {
        DbConnection::Postgresql(c) => {
            let levels: Vec<i16> = wanted.iter().map(|(level, _)| *level as i16).collect();
            let indices: Vec<i64> = wanted.iter().map(|(_, index)| to_i64(*index)).collect();
            NodesAtStatement {
                levels: &levels,
                indices: &indices,
            }
            .load(c)?
        }
        DbConnection::Sqlite(c) => {
            // Group by level: one `idx IN (…)` per level.
            let mut by_level: HashMap<u32, Vec<i64>> = HashMap::new();
            for (level, index) in wanted {
                by_level.entry(*level).or_default().push(to_i64(*index));
            }
            let mut query = nodes::table.into_boxed();
            for (level, indices) in &by_level {
                query = query.or_filter(
                    nodes::level
                        .eq(*level as i16)
                        .and(nodes::idx.eq_any(indices.clone())),
                );
            }
            query
                .select((nodes::level, nodes::idx, nodes::hash))
                .load(c)?
        }
    };
    for (level, index, hash) in rows {
        found.insert((level as u32, index as u64), to_hash(&hash)?);
    }
    Ok(found)
}

/// The PostgreSQL node lookup: the wanted coordinates as two arrays joined
/// to the table, so the SQL text is the same for every proof and the
/// statement is prepared once per connection. A proof at a million entries
/// reads about twenty nodes on as many levels; as a query with one `OR`
/// branch per level, every proof, receipt and integration was parsed and
/// planned anew.
struct NodesAtStatement<'a> {
    levels: &'a [i16],
    indices: &'a [i64],
}

impl diesel::query_builder::QueryId for NodesAtStatement<'_> {
    type QueryId = ();
    // Cached by its SQL text, which never changes.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for NodesAtStatement<'_> {
    type SqlType = (
        diesel::sql_types::SmallInt,
        diesel::sql_types::BigInt,
        diesel::sql_types::Binary,
    );
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for NodesAtStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, SmallInt};
        out.push_sql("SELECT n.level, n.idx, n.hash FROM access_log_nodes n JOIN unnest(");
        out.push_bind_param::<Array<SmallInt>, _>(self.levels)?;
        out.push_sql("::smallint[], ");
        out.push_bind_param::<Array<BigInt>, _>(self.indices)?;
        out.push_sql("::bigint[]) AS w (level, idx) ON n.level = w.level AND n.idx = w.idx");
        Ok(())
    }
}

impl RunQueryDsl<diesel::PgConnection> for NodesAtStatement<'_> {}

/// An endpoint's id and owner: a patient, a hospital, or neither (NATS).
type EndpointTarget = (String, Option<String>, Option<String>);

/// Endpoints that may hear about the batch's entries: the patients' own
/// webhooks, and every active endpoint not owned by a patient (NATS
/// subjects and hospitals' patient-app webhooks). Those are few, so all are
/// read rather than looking up the hospital of every patient in the batch
/// (4–5 ms for 1,000 patients, on every integration); `queue_deliveries`
/// matches hospital apps to the patients.
fn endpoints_for(
    conn: &mut DbConnection,
    patients_in_batch: &BTreeSet<&str>,
) -> Result<Vec<EndpointTarget>, DieselError> {
    let list: Vec<&str> = patients_in_batch.iter().copied().collect();
    db_run!(conn, c => {
        let mut found: Vec<EndpointTarget> = endpoints::table
            .filter(endpoints::disabled_at.is_null())
            .filter(endpoints::patient_pseudonym.is_null())
            // An application's webhook hears only its recall notices.
            .filter(endpoints::application_id.is_null())
            .select((endpoints::id, endpoints::patient_pseudonym, endpoints::hospital_org))
            .load(c)?;
        for chunk in list.chunks(CHUNK) {
            found.extend(
                endpoints::table
                    .filter(endpoints::disabled_at.is_null())
                    .filter(endpoints::patient_pseudonym.eq_any(chunk))
                    .select((endpoints::id, endpoints::patient_pseudonym, endpoints::hospital_org))
                    .load::<EndpointTarget>(c)?,
            );
        }
        Ok::<_, DieselError>(found)
    })
}

/// For each patient in the batch: their hospital and whether they accept
/// notifications through the hospital's app (default yes).
fn hospital_app_routes(
    conn: &mut DbConnection,
    patients_in_batch: &BTreeSet<&str>,
) -> Result<HashMap<String, (String, bool)>, DieselError> {
    let list: Vec<&str> = patients_in_batch.iter().copied().collect();
    let mut routes = HashMap::new();
    for chunk in list.chunks(CHUNK) {
        let rows: Vec<(String, String, Option<bool>)> = db_run!(conn, c => patients::table
            .left_join(patient_preferences::table)
            .filter(patients::pseudonym.eq_any(chunk))
            .select((patients::pseudonym, patients::hospital_org, patient_preferences::hospital_app.nullable()))
            .load(c))?;
        for (pseudonym, hospital, app) in rows {
            routes.insert(pseudonym, (hospital, app.unwrap_or(true)));
        }
    }
    Ok(routes)
}

/// Integrates up to `max` queued entries. `None` when nothing was queued.
pub fn integrate(
    conn: &mut DbConnection,
    signer: &NoteSigner,
    origin: &str,
    now: DateTime<Utc>,
    max: usize,
) -> Result<Option<Integrated>, DieselError> {
    write_transaction(conn, |conn| {
        if let DbConnection::Postgresql(c) = conn {
            diesel::select(crate::db::pg_advisory_xact_lock(INTEGRATION_LOCK)).execute(c)?;
        }
        // The queue first, then its entries by key. As one join, PostgreSQL
        // merge-joins the queue with the whole log in key order, reading
        // every entry ever appended before it reaches the queued ones.
        let waiting: Vec<(i64, String)> = db_run!(conn, c => outbox::table
            .order(outbox::seq)
            .limit(max as i64)
            .select((outbox::seq, outbox::patient_pseudonym))
            .load(c))?;
        if waiting.is_empty() {
            return Ok(None);
        }
        let seqs: Vec<i64> = waiting.iter().map(|(seq, _)| *seq).collect();
        let mut bytes: HashMap<i64, Vec<u8>> = HashMap::with_capacity(seqs.len());
        for chunk in seqs.chunks(CHUNK) {
            let rows: Vec<(i64, Vec<u8>)> = db_run!(conn, c => entries::table
                .filter(entries::seq.eq_any(chunk))
                .select((entries::seq, entries::entry))
                .load(c))?;
            bytes.extend(rows);
        }
        let queued = waiting
            .into_iter()
            .map(|(seq, patient)| {
                let entry = bytes
                    .remove(&seq)
                    .ok_or_else(|| corrupt("outbox (a queued entry is missing)"))?;
                Ok((seq, patient, entry))
            })
            .collect::<Result<Vec<(i64, String, Vec<u8>)>, DieselError>>()?;
        let from = size(conn)?;
        let needed = Frontier::needed(from);
        let stored = nodes_at(conn, &needed)?;
        let resume_nodes = needed
            .iter()
            .map(|k| stored.get(k).copied())
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| corrupt("tree (a frontier node is missing)"))?;
        let mut frontier =
            Frontier::resume(from, &resume_nodes).ok_or_else(|| corrupt("tree frontier"))?;
        let mut leaf_rows = Vec::with_capacity(queued.len());
        let mut node_rows = Vec::with_capacity(queued.len() * 2);
        for (seq, _, bytes) in &queued {
            leaf_rows.push((
                leaves::idx.eq(to_i64(frontier.size())),
                leaves::seq.eq(*seq),
            ));
            for made in frontier.push(leaf_hash(bytes)) {
                node_rows.push((
                    nodes::level.eq(made.level as i16),
                    nodes::idx.eq(to_i64(made.index)),
                    nodes::hash.eq(made.hash.to_vec()),
                ));
            }
        }
        let to = frontier.size();
        let root = frontier.root();
        match conn {
            // Binary COPY: multi-row VALUES made PostgreSQL parse and plan
            // a statement of thousands of parameters on every integration.
            DbConnection::Postgresql(c) => {
                diesel::copy_from(leaves::table)
                    .from_insertable(leaf_rows)
                    .execute(c)?;
                diesel::copy_from(nodes::table)
                    .from_insertable(node_rows)
                    .execute(c)?;
            }
            DbConnection::Sqlite(c) => {
                for chunk in leaf_rows.chunks(CHUNK) {
                    diesel::insert_into(leaves::table)
                        .values(chunk)
                        .execute(c)?;
                }
                for chunk in node_rows.chunks(CHUNK) {
                    diesel::insert_into(nodes::table).values(chunk).execute(c)?;
                }
            }
        }
        db_run!(conn, c => {
            for chunk in seqs.chunks(CHUNK) {
                diesel::delete(outbox::table.filter(outbox::seq.eq_any(chunk))).execute(c)?;
            }
            Ok::<_, DieselError>(())
        })?;
        let note = signer.sign(&Checkpoint {
            origin: origin.to_owned(),
            size: to,
            root,
        });
        db_run!(conn, c => diesel::insert_into(checkpoints::table)
            .values((
                checkpoints::size.eq(to_i64(to)),
                checkpoints::root.eq(root.to_vec()),
                checkpoints::note.eq(&note),
                checkpoints::signed_at.eq(now.naive_utc()),
            ))
            .execute(c))?;
        queue_deliveries(conn, &queued, from, now)?;
        if let DbConnection::Postgresql(c) = conn {
            crate::db::prepared::PgStatement::new("SELECT pg_notify($1, $2)")
                .bind::<diesel::sql_types::Text, _>(LOG_CHANNEL)
                .bind::<diesel::sql_types::Text, _>(to.to_string())
                .execute(c)?;
        }
        Ok(Some(Integrated {
            from,
            to,
            root,
            note,
        }))
    })
}

/// One pending delivery per (endpoint, entry) for the entries just
/// integrated at indices `from..`.
fn queue_deliveries(
    conn: &mut DbConnection,
    queued: &[(i64, String, Vec<u8>)],
    from: u64,
    now: DateTime<Utc>,
) -> Result<(), DieselError> {
    let in_batch: BTreeSet<&str> = queued.iter().map(|(_, p, _)| p.as_str()).collect();
    let targets = endpoints_for(conn, &in_batch)?;
    if targets.is_empty() {
        return Ok(());
    }
    let routes = hospital_app_routes(conn, &in_batch)?;
    let mut rows = Vec::new();
    for (offset, (_, patient, _)) in queued.iter().enumerate() {
        let idx = to_i64(from + offset as u64);
        for (id, endpoint_patient, endpoint_hospital) in &targets {
            let wanted = match (endpoint_patient, endpoint_hospital) {
                (Some(p), _) => p == patient,
                (None, Some(h)) => routes
                    .get(patient)
                    .is_some_and(|(hospital, app)| hospital == h && *app),
                (None, None) => true,
            };
            if wanted {
                rows.push((
                    deliveries::endpoint_id.eq(id.clone()),
                    deliveries::idx.eq(idx),
                    deliveries::state.eq(crate::db::notify::DeliveryState::Pending.as_str()),
                    deliveries::attempts.eq(0),
                    deliveries::next_attempt_at.eq(now.naive_utc()),
                ));
            }
        }
    }
    db_run!(conn, c => {
        for chunk in rows.chunks(CHUNK) {
            diesel::insert_into(deliveries::table).values(chunk).execute(c)?;
        }
        Ok::<_, DieselError>(())
    })
}
