//! Proofs and checkpoints, from the stored nodes.

use super::*;

/// Runs a computation over stored nodes: finds which nodes it reads, loads
/// them in one query, then runs it for real.
fn with_stored_nodes<T>(
    conn: &mut DbConnection,
    run: impl Fn(&mut dyn FnMut(u32, u64) -> Hash) -> T,
) -> Result<T, DieselError> {
    let wanted = merkle::nodes_read_by(|node| {
        run(node);
    });
    let found = nodes_at(conn, &wanted)?;
    let mut missing = false;
    let value = run(&mut |level, index| match found.get(&(level, index)) {
        Some(hash) => *hash,
        None => {
            missing = true;
            [0; 32]
        }
    });
    if missing {
        return Err(corrupt("tree (a stored node is missing)"));
    }
    Ok(value)
}

pub fn inclusion_proof(
    conn: &mut DbConnection,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, DieselError> {
    with_stored_nodes(conn, |node| merkle::inclusion_proof_from(index, size, node))
}

pub fn consistency_proof(
    conn: &mut DbConnection,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, DieselError> {
    with_stored_nodes(conn, |node| merkle::consistency_proof_from(old, new, node))
}

/// Inclusion proofs for many leaves at one tree size, from one node query.
pub fn inclusion_proofs(
    conn: &mut DbConnection,
    indices: &[u64],
    size: u64,
) -> Result<Vec<Vec<Hash>>, DieselError> {
    with_stored_nodes(conn, |node| {
        indices
            .iter()
            .map(|i| merkle::inclusion_proof_from(*i, size, node))
            .collect()
    })
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = checkpoints)]
pub struct CheckpointRow {
    pub size: i64,
    pub root: Vec<u8>,
    pub note: String,
    pub signed_at: NaiveDateTime,
}

pub fn latest_checkpoint(conn: &mut DbConnection) -> Result<Option<CheckpointRow>, DieselError> {
    db_run!(conn, c => checkpoints::table
        .order(checkpoints::size.desc())
        .select(CheckpointRow::as_select())
        .first(c)
        .optional())
}

pub fn checkpoint_at(
    conn: &mut DbConnection,
    size: u64,
) -> Result<Option<CheckpointRow>, DieselError> {
    db_run!(conn, c => checkpoints::table
        .find(to_i64(size))
        .select(CheckpointRow::as_select())
        .first(c)
        .optional())
}

/// Every stored checkpoint, smallest first (verification).
pub fn all_checkpoints(conn: &mut DbConnection) -> Result<Vec<CheckpointRow>, DieselError> {
    db_run!(conn, c => checkpoints::table
        .order(checkpoints::size)
        .select(CheckpointRow::as_select())
        .load(c))
}
