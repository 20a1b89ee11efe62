//! Reading applications: one, or the pages a caller may read.

use super::*;
use crate::app::gates::{application_for, may, principal};
use crate::app::Context;
use crate::auth::policy::Action;
use crate::auth::{Caller, Role};

#[derive(Serialize, ToSchema)]
pub struct ApplicationList {
    pub applications: Vec<ApplicationView>,
    /// Pass as `after` for the next page; absent on the last. A page
    /// leaves out what the caller may not read, so it may hold fewer than
    /// `limit` and still have a next page.
    pub next_after: Option<String>,
}

/// Which page of applications: those in `state` (every state when
/// absent), after the list position `after` (a `next_after`), `limit` of
/// them.
pub struct ApplicationPage {
    pub state: Option<ApplicationState>,
    pub after: Option<ListPosition>,
    pub limit: i64,
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, in microseconds.
const EARLIEST_MICROS: i64 = -62_135_596_800_000_000;
const LATEST_MICROS: i64 = 253_402_300_799_000_000;

/// A list position: the last application's submission time and id.
/// Opaque to callers (`<microseconds since the epoch>_<id>`); it names
/// nothing they could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    pub submitted_at: chrono::NaiveDateTime,
    pub id: String,
}

impl ListPosition {
    fn of(row: &ApplicationRow) -> String {
        format!(
            "{}_{}",
            row.submitted_at.and_utc().timestamp_micros(),
            row.id
        )
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let (micros, id) = raw.split_once('_')?;
        // At most 18 digits: every such instant is one chrono represents.
        if micros.trim_start_matches(['+', '-']).len() > 18 {
            return None;
        }
        // Every application lies within years 1-9999, and so does every
        // instant both databases store: a position beyond them reads as
        // its edge.
        let micros: i64 = micros.parse().ok()?;
        let at = DateTime::from_timestamp_micros(micros.clamp(EARLIEST_MICROS, LATEST_MICROS))?
            .naive_utc();
        (!id.is_empty()).then(|| ListPosition {
            submitted_at: at,
            id: id.to_owned(),
        })
    }
}

/// One application with its matching, transitions, votes and agreement.
pub fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<ApplicationView, AppError> {
    principal(caller)?;
    ctx.read(|conn| {
        let app = application_for(ctx, conn, caller, Action::ApplicationRead, id)?;
        view(conn, &ctx.data_use, &app)
    })
}

/// Applications the caller may read, oldest first and paged: the
/// committee's work list, or a researcher's own organization's (as
/// applicant or as a partner) when no state is asked for.
pub fn list(
    ctx: &Context,
    caller: &Caller,
    page: ApplicationPage,
) -> Result<ApplicationList, AppError> {
    let p = principal(caller)?;
    let every_state = ApplicationState::ALL.map(ApplicationState::as_str);
    let one = page.state.map(|s| [s.as_str()]);
    let filter = store::ApplicationFilter {
        states: match &one {
            Some(one) => one,
            None => &every_state,
        },
        org: (page.state.is_none() && p.has(Role::Researcher)).then_some(p.org.as_str()),
    };
    let after = page.after.as_ref().map(|a| (a.submitted_at, a.id.as_str()));
    ctx.read(|conn| {
        let rows = store::applications_page(conn, &filter, after, page.limit)?;
        let next_after = (rows.len() as i64 == page.limit)
            .then(|| rows.last().map(ListPosition::of))
            .flatten();
        let mut readable = Vec::new();
        for row in rows {
            let app = Application::from_row(row)?;
            if may(ctx, caller, Action::ApplicationRead, &app) {
                readable.push(app);
            }
        }
        Ok(ApplicationList {
            applications: views(conn, &ctx.data_use, &readable)?,
            next_after,
        })
    })
}
