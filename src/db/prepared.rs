//! PostgreSQL statements written as SQL text, which diesel prepares once
//! per connection.
//!
//! Diesel never caches a `sql_query`: it cannot know that the text is fixed,
//! so each run is parsed and planned anew, in a round trip of its own. For
//! the hot writes (a consent grant, a sample with its objects), planning a
//! data-modifying CTE cost PostgreSQL about as much as running it (the
//! ledger's `AppendStatement` found the same). A [`PgStatement`] renders the
//! same SQL with diesel's own bind parameters, so the statement cache keys
//! it by its text and prepares it once.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::Error as DieselError;
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::QueryResult;
use std::marker::PhantomData;

/// SQL text whose parameters are written `$1`, `$2`, … (a parameter may
/// appear more than once), with a value bound to each. The text must be one
/// of a few fixed strings: the cache holds every text it sees for the
/// connection's life. No `$` may appear in the text except as a parameter.
pub struct PgStatement<'a> {
    sql: String,
    binds: Vec<Box<dyn PushBind + 'a>>,
}

impl<'a> PgStatement<'a> {
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            binds: Vec::new(),
        }
    }

    /// Binds the next parameter, `$n` for the n-th call, as SQL type `ST`.
    pub fn bind<ST, U>(mut self, value: U) -> Self
    where
        Pg: HasSqlType<ST>,
        U: ToSql<ST, Pg> + 'a,
        ST: 'a,
    {
        self.binds
            .push(Box::new(Typed::<ST, U>(value, PhantomData)));
        self
    }
}

/// One bound value, its SQL type erased.
trait PushBind {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct Typed<ST, U>(U, PhantomData<ST>);

impl<ST, U> PushBind for Typed<ST, U>
where
    Pg: HasSqlType<ST>,
    U: ToSql<ST, Pg>,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, U>(&self.0)
    }
}

impl QueryId for PgStatement<'_> {
    type QueryId = ();
    // Cached by its SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for PgStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut rest = self.sql.as_str();
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(rest.len() - at - 1, |end| end);
            let bind = rest[at + 1..at + 1 + digits]
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| self.binds.get(i))
                .ok_or_else(|| {
                    DieselError::QueryBuilderError(
                        format!(
                            "`${}` names no bound parameter",
                            &rest[at + 1..at + 1 + digits]
                        )
                        .into(),
                    )
                })?;
            bind.push(&mut out)?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

// Rows load by name (`QueryableByName`), as from a `sql_query`.
impl diesel::query_builder::Query for PgStatement<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::RunQueryDsl<diesel::PgConnection> for PgStatement<'_> {}

#[cfg(test)]
mod tests {
    use super::PgStatement;
    use diesel::sql_types::{Integer, Text};

    #[test]
    fn parameters_are_renumbered_in_order_of_appearance() {
        let statement = PgStatement::new("SELECT $2, $1, $2 WHERE x = $10")
            .bind::<Text, _>("a")
            .bind::<Integer, _>(2)
            .bind::<Integer, _>(3)
            .bind::<Integer, _>(4)
            .bind::<Integer, _>(5)
            .bind::<Integer, _>(6)
            .bind::<Integer, _>(7)
            .bind::<Integer, _>(8)
            .bind::<Integer, _>(9)
            .bind::<Integer, _>(10);
        let sql = diesel::debug_query::<diesel::pg::Pg, _>(&statement).to_string();
        assert!(
            sql.starts_with("SELECT $1, $2, $3 WHERE x = $4 -- binds: [2, \"a\", 2, 10]"),
            "{sql}"
        );
    }

    #[test]
    fn a_parameter_without_a_value_is_an_error() {
        let statement = PgStatement::new("SELECT $1, $2").bind::<Text, _>("a");
        let rendered = diesel::query_builder::QueryFragment::<diesel::pg::Pg>::to_sql(
            &statement,
            &mut <diesel::pg::Pg as diesel::backend::Backend>::QueryBuilder::default(),
            &diesel::pg::Pg,
        );
        let error = format!("{rendered:?}");
        assert!(error.contains("names no bound parameter"), "{error}");
    }
}
