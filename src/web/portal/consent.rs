//! The patient's consent, item by item in plain words, and withdrawing it:
//! everything, or any item now agreed to. Widening stays with the
//! hospital, which must explain first.

use super::super::page::{self, visit, Visit};
use super::{not_found_page, refused_page, sign_in_first};
use crate::api::state::AppState;
use crate::app::portal::{self, FamilyConsent, OwnWithdrawal};
use crate::app::AppError;
use crate::consent::{ConsentStatus, Decision, DocumentFamily, ItemBasis, ScopeItemKey};
use crate::ledger::entry::Language;
use crate::web::words::Words;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/withdraw/{family}", web::get().to(confirm))
        .route("/withdraw/{family}", web::post().to(withdraw));
}

struct ItemView {
    key: String,
    label: String,
    text: String,
    decision: &'static str,
    decision_class: &'static str,
    reason: Option<&'static str>,
    withdrawable: bool,
}

struct FamilyView {
    family: &'static str,
    title: String,
    status: &'static str,
    status_class: &'static str,
    version: Option<String>,
    items: Vec<ItemView>,
    any_denied: bool,
    withdrawable: bool,
}

#[derive(Template)]
#[template(path = "portal/consent.html")]
struct ConsentPage {
    page: page::Page,
    families: Vec<FamilyView>,
    notice: Option<&'static str>,
}

fn pick(lang: Language, ja: &str, en: &str) -> String {
    match lang {
        Language::Ja => ja.to_owned(),
        Language::En => en.to_owned(),
    }
}

fn family_view(f: FamilyConsent, w: &Words, lang: Language) -> FamilyView {
    let active = f.status == ConsentStatus::Active;
    let items: Vec<ItemView> = f
        .items
        .into_iter()
        .map(|i| {
            let permit = i.state.decision == Decision::Permit && !i.needs_own_consent;
            let reason = if i.needs_own_consent {
                Some(w.reason_own_consent)
            } else {
                match (&i.state.decision, &i.state.basis) {
                    (Decision::Permit, _) => None,
                    (_, ItemBasis::Withdrawn { .. }) => Some(w.reason_withdrawn),
                    (_, ItemBasis::NeedsReconsent { .. }) => Some(w.reason_needs_reconsent),
                    (_, ItemBasis::NotAsked) => Some(w.reason_not_asked),
                    _ => None,
                }
            };
            ItemView {
                key: i.item.key.to_string(),
                label: pick(lang, &i.item.label_ja, &i.item.label_en),
                text: pick(lang, &i.item.text_ja, &i.item.text_en),
                decision: if permit { w.permit } else { w.deny },
                decision_class: if permit { "permit" } else { "deny" },
                reason,
                withdrawable: active && i.state.decision == Decision::Permit,
            }
        })
        .collect();
    let (status, status_class) = match f.status {
        ConsentStatus::Active => (w.status_active, "active"),
        ConsentStatus::Withdrawn => (w.status_withdrawn, "withdrawn"),
        ConsentStatus::None => (w.status_none, "none"),
    };
    FamilyView {
        family: f.family.as_str(),
        title: f
            .version
            .as_ref()
            .map(|v| pick(lang, &v.content.title_ja, &v.content.title_en))
            .unwrap_or_else(|| f.family.as_str().to_owned()),
        status,
        status_class,
        version: f.version.as_ref().map(|v| v.id.to_string()),
        any_denied: items.iter().any(|i| i.decision_class == "deny"),
        withdrawable: active,
        items,
    }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

/// The consent page (`/portal/` when signed in).
pub(super) async fn page(req: &HttpRequest, state: &AppState, visit: Visit) -> HttpResponse {
    let Some(patient) = visit.patient() else {
        return sign_in_first(&visit);
    };
    let caller = patient.caller.clone();
    let Ok(families) = state
        .run(move |ctx| portal::consent_details(ctx, &caller))
        .await
    else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let w = visit.words();
    let done = web::Query::<Done>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.done.clone());
    let body = ConsentPage {
        page: visit.page(w.consent_title, "consent", "/portal/"),
        families: families
            .into_iter()
            .map(|f| family_view(f, w, visit.lang))
            .collect(),
        notice: (done.as_deref() == Some("withdrawn")).then_some(w.withdrawn_done),
    }
    .render();
    visit.html(StatusCode::OK, body)
}

#[derive(Template)]
#[template(path = "portal/withdraw.html")]
struct ConfirmPage {
    page: page::Page,
    family: &'static str,
    item_key: Option<String>,
    what_heading: &'static str,
    what: String,
    /// A one-time key: the form submitted twice records one withdrawal.
    key: String,
}

#[derive(Deserialize)]
struct ItemQuery {
    item: Option<String>,
}

/// What a withdrawal would take back, if the patient may withdraw it now:
/// the family's title, or the item's label.
async fn withdrawable(
    state: &AppState,
    visit: &Visit,
    family: &str,
    item: Option<&str>,
) -> Option<(DocumentFamily, Option<ScopeItemKey>, String)> {
    let family: DocumentFamily = family.parse().ok()?;
    let item = match item {
        Some(raw) => Some(ScopeItemKey::parse(raw).ok()?),
        None => None,
    };
    let caller = visit.patient()?.caller.clone();
    let families = state
        .run(move |ctx| portal::consent_details(ctx, &caller))
        .await
        .ok()?;
    let view = family_view(
        families.into_iter().find(|f| f.family == family)?,
        visit.words(),
        visit.lang,
    );
    if !view.withdrawable {
        return None;
    }
    let what = match &item {
        None => view.title,
        Some(key) => {
            view.items
                .into_iter()
                .find(|i| i.key == key.as_str() && i.withdrawable)?
                .label
        }
    };
    Some((family, item, what))
}

fn statement(w: &Words, what: &str) -> String {
    std::iter::once(what)
        .chain(w.withdraw_consequences.iter().copied())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    family: web::Path<String>,
    query: web::Query<ItemQuery>,
) -> HttpResponse {
    let visit = match visit(&req, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if visit.patient().is_none() {
        return sign_in_first(&visit);
    }
    let Some((family, item, what)) =
        withdrawable(&state, &visit, &family, query.item.as_deref()).await
    else {
        return not_found_page(&visit);
    };
    let Ok(key) = page::new_form_key() else {
        return HttpResponse::InternalServerError().finish();
    };
    let w = visit.words();
    let body = ConfirmPage {
        page: visit.page(w.withdraw_title, "consent", "/portal/"),
        family: family.as_str(),
        what_heading: if item.is_some() {
            w.withdraw_what_item
        } else {
            w.withdraw_what_all
        },
        item_key: item.map(|k| k.to_string()),
        what,
        key,
    }
    .render();
    visit.html(StatusCode::OK, body)
}

#[derive(Deserialize)]
struct WithdrawForm {
    csrf: String,
    key: String,
    item: Option<String>,
}

async fn withdraw(
    req: HttpRequest,
    state: web::Data<AppState>,
    family: web::Path<String>,
    form: web::Form<WithdrawForm>,
) -> HttpResponse {
    let visit = match visit(&req, &state).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !page::same_site_with_token(&req, &visit.session, &form.csrf) {
        return refused_page(&visit);
    }
    let Some(patient) = visit.patient() else {
        return sign_in_first(&visit);
    };
    let form = form.into_inner();
    let key_ok = page::is_form_key(&form.key);
    let Some((family, item, what)) = withdrawable(&state, &visit, &family, form.item.as_deref())
        .await
        .filter(|_| key_ok)
    else {
        return not_found_page(&visit);
    };
    let caller = patient.caller.clone();
    let withdrawal = OwnWithdrawal {
        family,
        items: item.map(|k| vec![k]),
        key: form.key,
        statement: statement(visit.words(), &what),
    };
    match state
        .run(move |ctx| portal::withdraw_own(ctx, &caller, withdrawal))
        .await
    {
        Ok(_) => visit.redirect("/portal/?done=withdrawn"),
        Err(crate::api::problem::ApiError::App(AppError::NotFound)) => not_found_page(&visit),
        Err(e) => {
            tracing::warn!(error = %e, "a portal withdrawal failed");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}
