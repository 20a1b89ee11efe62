//! Who used the patient's data, newest first and paged, with each entry's
//! logged bytes for the browser to check against the log's signed
//! checkpoints; and the stream that tells an open page of a new entry.

use super::super::page::{self, visit};
use super::signed_in;
use crate::api::state::AppState;
use crate::app::portal::{self, AccessPage, LogPage, LOG_PAGE};
use crate::ledger::entry::Language;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/history", web::get().to(history))
        .route("/history/stream", web::get().to(stream));
}

struct EntryView {
    index: Option<u64>,
    /// The logged bytes, base64: what the browser hashes into the leaf.
    bytes: String,
    summary: String,
    who: String,
    what: String,
    why: String,
    when: String,
    when_iso: String,
}

#[derive(Template)]
#[template(path = "portal/history.html")]
struct HistoryPage {
    page: page::Page,
    entries: Vec<EntryView>,
    next_before: Option<i64>,
    /// The newest page, which the live stream updates.
    live: bool,
}

/// Japan Standard Time: the patients' and the hospitals' clock.
pub(super) fn in_japan(rfc3339: &str) -> String {
    let jst = FixedOffset::east_opt(9 * 3600);
    match (DateTime::parse_from_rfc3339(rfc3339), jst) {
        (Ok(t), Some(jst)) => t
            .with_timezone(&jst)
            .format("%Y-%m-%d %H:%M JST")
            .to_string(),
        _ => rfc3339.to_owned(),
    }
}

fn entries(page: AccessPage, lang: Language) -> (Vec<EntryView>, Option<i64>) {
    let views = page
        .entries
        .into_iter()
        .map(|a| {
            let e = a.explanation;
            EntryView {
                index: a.index,
                bytes: a.entry_bytes,
                who: match lang {
                    Language::Ja => format!("{}（{}）", e.organization, e.who),
                    Language::En => format!("{} ({})", e.organization, e.who),
                },
                what: e.what,
                why: format!("{} — {}", e.purpose, e.basis),
                when: in_japan(&e.when),
                when_iso: e.when,
                summary: e.summary,
            }
        })
        .collect();
    (views, page.next_before)
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<i64>,
}

async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HistoryQuery>,
) -> HttpResponse {
    let (visit, caller) = match signed_in(&req, &state).await {
        Ok(signed_in) => signed_in,
        Err(r) => return r,
    };
    let request = LogPage {
        before: query.before.filter(|b| *b > 0),
        limit: LOG_PAGE,
        lang: Some(visit.lang),
    };
    let live = request.before.is_none();
    let Ok(found) = state
        .run(move |ctx| portal::access_log(ctx, &caller, request))
        .await
    else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let (entries, next_before) = entries(found, visit.lang);
    let w = visit.words();
    let back = match query.before {
        Some(b) => format!("/portal/history?before={b}"),
        None => "/portal/history".to_owned(),
    };
    let body = HistoryPage {
        page: visit.page(w.history_title, "history", &back),
        entries,
        next_before,
        live,
    }
    .render();
    visit.html(StatusCode::OK, body)
}

/// `GET /portal/history/stream`: Server-Sent Events, one per new receipt
/// of the signed-in patient, for the open history page to refresh itself.
async fn stream(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visit = match visit(&req, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(patient) = visit.patient() else {
        return HttpResponse::Unauthorized().finish();
    };
    let caller = patient.caller.clone();
    match state
        .run(move |ctx| portal::open_stream(ctx, &caller, None))
        .await
    {
        Ok(stream) => HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("cache-control", "no-store"))
            .streaming(crate::api::portal::sse_body(stream)),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}
