//! An application as every reader sees it: its declaration, the use as
//! the register says it is now, matching, transitions, votes and agreement.

use super::*;
use crate::db::documents::utc;
use std::collections::HashMap;

pub fn view(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    app: &Application,
) -> Result<ApplicationView, AppError> {
    views(conn, policy, std::slice::from_ref(app))?
        .pop()
        .ok_or_else(|| AppError::internal("an application without its view"))
}

/// The register's entries for every member organization of `apps`, read
/// once: what makes each use industrial or a transfer abroad today.
pub fn registered_members(
    conn: &mut DbConnection,
    apps: &[Application],
) -> Result<Vec<OrganizationRow>, AppError> {
    let mut member_orgs: Vec<&str> = apps.iter().flat_map(Application::member_orgs).collect();
    member_orgs.sort_unstable();
    member_orgs.dedup();
    Ok(store::find_organizations(conn, &member_orgs)?)
}

/// The views of applications, in order, from one query per related table
/// however many applications there are.
pub fn views(
    conn: &mut DbConnection,
    policy: &DataUsePolicy,
    apps: &[Application],
) -> Result<Vec<ApplicationView>, AppError> {
    if apps.is_empty() {
        return Ok(Vec::new());
    }
    let registered = registered_members(conn, apps)?;
    let ids: Vec<String> = apps.iter().map(|a| a.row.id.clone()).collect();
    let mut transitions: HashMap<String, Vec<TransitionView>> = HashMap::new();
    for t in store::transitions_of(conn, &ids)? {
        transitions
            .entry(t.application_id)
            .or_default()
            .push(TransitionView {
                state: t.state,
                actor: t.actor,
                at: utc(t.at),
            });
    }
    let mut votes: HashMap<String, usize> = HashMap::new();
    for v in store::votes_of(conn, &ids)? {
        *votes.entry(v.application_id).or_default() += 1;
    }
    let agreements = store::agreements_of_applications(conn, &ids)?;
    let mut agreement_views: HashMap<String, AgreementView> = HashMap::new();
    if !agreements.is_empty() {
        let agreement_ids: Vec<String> = agreements.iter().map(|a| a.id.clone()).collect();
        let current = store::current_text(conn)?.map(|t| t.version);
        let mut accepted: HashMap<String, Vec<Member>> = HashMap::new();
        for x in store::acceptances_of(conn, &agreement_ids)? {
            if Some(x.text_version) == current {
                accepted.entry(x.agreement_id).or_default().push(Member {
                    org: x.member_org,
                    researcher: x.member,
                });
            }
        }
        let mut history: HashMap<String, Vec<AgreementStateView>> = HashMap::new();
        for t in store::agreement_transitions_of(conn, &agreement_ids)? {
            history
                .entry(t.agreement_id)
                .or_default()
                .push(AgreementStateView {
                    state: agreement_state(&t.state)?,
                    reason: t.reason,
                    actor: t.actor,
                    at: utc(t.at),
                });
        }
        for a in agreements {
            agreement_views.insert(
                a.application_id.clone(),
                AgreementView {
                    history: history.remove(&a.id).unwrap_or_default(),
                    accepted_current_text: accepted.remove(&a.id).unwrap_or_default(),
                    id: a.id,
                    state: agreement_state(&a.state)?,
                    expires_at: utc(a.expires_at),
                    state_reason: a.state_reason,
                },
            );
        }
    }
    apps.iter()
        .map(|app| {
            let id = &app.row.id;
            view_with(
                app,
                app.use_now(policy, &registered),
                transitions.remove(id).unwrap_or_default(),
                votes.get(id).copied().unwrap_or(0),
                agreement_views.remove(id),
            )
        })
        .collect()
}

fn view_with(
    app: &Application,
    use_now: UseKind,
    transitions: Vec<TransitionView>,
    votes: usize,
    agreement: Option<AgreementView>,
) -> Result<ApplicationView, AppError> {
    let d = &app.declaration;
    Ok(ApplicationView {
        id: app.row.id.clone(),
        org: app.row.org.clone(),
        submitted_by: app.row.submitted_by.clone(),
        title: d.title.clone(),
        purpose: purpose_view(&d.purpose),
        datasets: d.datasets.clone(),
        members: d.members.clone(),
        partner_members: d.partner_members.clone(),
        ethics_ref: d.ethics_ref.clone(),
        starts_on: d.starts_on,
        ends_on: d.ends_on,
        recipients_abroad: d.recipients_abroad,
        commercial: use_now.commercial,
        transfers_abroad: use_now.abroad,
        state: app.state()?,
        matching: app.matching()?,
        conditions: app.conditions()?,
        votes,
        transitions,
        agreement,
        submitted_at: utc(app.row.submitted_at),
        decided_at: app.row.decided_at.map(utc),
        access_started_at: app.row.access_started_at.map(utc),
    })
}

fn agreement_state(stored: &str) -> Result<AgreementState, AppError> {
    AgreementState::parse(stored).ok_or_else(|| AppError::internal("stored agreement state"))
}
