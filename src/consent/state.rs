//! Consent state derived from events.
//!
//! Nothing is overwritten: a grant, a change and a withdrawal are each an
//! event, and the scope in force at any instant is a pure function of the
//! events signed by then and the document versions published by then.
//! Unknown means deny: an item nobody asked about, an item whose wording
//! changed materially since the patient said yes, and everything after a
//! withdrawal all come out as [`Decision::Deny`].

use super::document::{ChangeKind, VersionHistory};
use super::ids::ScopeItemKey;
use super::person::Person;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Permit,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Permit => "permit",
            Decision::Deny => "deny",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "permit" => Some(Self::Permit),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A full consent on one document version: a decision for every item.
    Grant,
    /// A change of some items, on the version in force when signed. This is
    /// also how re-consent for materially changed items is recorded.
    Amend,
    /// Withdrawal of the whole consent.
    WithdrawAll,
    /// Withdrawal of the listed items only.
    WithdrawItems,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Grant => "grant",
            EventKind::Amend => "amend",
            EventKind::WithdrawAll => "withdraw_all",
            EventKind::WithdrawItems => "withdraw_items",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "grant" => Some(Self::Grant),
            "amend" => Some(Self::Amend),
            "withdraw_all" => Some(Self::WithdrawAll),
            "withdraw_items" => Some(Self::WithdrawItems),
            _ => None,
        }
    }
}

/// One recorded consent event of one patient within one document family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub id: String,
    pub kind: EventKind,
    /// Number of the document version the event was signed on.
    pub version: u32,
    /// When the patient (or proxy) signed: the event is in force from then.
    pub signed_at: DateTime<Utc>,
    /// When the hospital registered it; breaks ties between equal signatures.
    pub recorded_at: DateTime<Utc>,
    /// Decisions by item. Withdrawals list the withdrawn items as deny.
    pub decisions: Vec<(ScopeItemKey, Decision)>,
    /// Signed by a proxy (代諾者) for the patient rather than by the patient.
    pub by_proxy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// No consent on record: everything is denied.
    None,
    Active,
    Withdrawn,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::None => "none",
            ConsentStatus::Active => "active",
            ConsentStatus::Withdrawn => "withdrawn",
        }
    }
}

/// Why an item has the decision it has. Machine-readable, so a release or a
/// patient screen can explain every include and exclude.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ItemBasis {
    /// Decided on the version in force.
    Consented { event_id: String, version: u32 },
    /// Decided on an older version; every change since was unchanged or
    /// editorial, so the decision still holds.
    CarriedForward {
        event_id: String,
        signed_on_version: u32,
    },
    /// The patient withdrew this item or the whole consent.
    Withdrawn { event_id: String },
    /// The patient permitted an older wording; a later version changed it
    /// materially (or removed and re-added it), so it is denied until the
    /// patient is asked again.
    NeedsReconsent {
        event_id: String,
        signed_on_version: u32,
        changed_in_version: u32,
        change: ChangeKind,
    },
    /// The patient was never asked about this item.
    NotAsked,
}

impl ItemBasis {
    /// The document version the decision was signed on, when it rests on
    /// a signature still counted (a withdrawal takes the decision back).
    pub fn signed_on_version(&self) -> Option<u32> {
        match self {
            ItemBasis::Consented { version, .. } => Some(*version),
            ItemBasis::CarriedForward {
                signed_on_version, ..
            }
            | ItemBasis::NeedsReconsent {
                signed_on_version, ..
            } => Some(*signed_on_version),
            ItemBasis::Withdrawn { .. } | ItemBasis::NotAsked => None,
        }
    }

    /// The event the decision rests on, if any.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            ItemBasis::Consented { event_id, .. }
            | ItemBasis::CarriedForward { event_id, .. }
            | ItemBasis::Withdrawn { event_id }
            | ItemBasis::NeedsReconsent { event_id, .. } => Some(event_id),
            ItemBasis::NotAsked => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemState {
    pub key: ScopeItemKey,
    pub decision: Decision,
    pub basis: ItemBasis,
    /// When the decision rests on an event a proxy signed: when they signed
    /// it. Whether it still speaks for the person depends on their age then
    /// and now ([`ItemState::lapsed_at_majority`]).
    #[serde(skip)]
    pub proxy_signed_at: Option<DateTime<Utc>>,
}

impl ItemState {
    /// A permit a proxy gave while the person was a minor, looked at once
    /// the person has come of age: it no longer speaks for them, so a use
    /// relying on it needs the person's own consent (decision 0026).
    pub fn lapsed_at_majority(&self, person: &Person, as_of: DateTime<Utc>) -> bool {
        self.decision == Decision::Permit
            && self
                .proxy_signed_at
                .is_some_and(|signed| person.minor_on(crate::calendar::day_of(signed)))
            && person.of_age_on(crate::calendar::day_of(as_of))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentSnapshot {
    pub as_of: DateTime<Utc>,
    pub status: ConsentStatus,
    /// The document version in force at `as_of`, if any was published yet.
    pub version_in_force: Option<u32>,
    /// One state per item of the version in force, in key order.
    pub items: Vec<ItemState>,
}

impl ConsentSnapshot {
    /// Deny by default: true only for an item explicitly permitted and still
    /// valid under the version in force.
    pub fn permits(&self, key: &ScopeItemKey) -> bool {
        self.items
            .iter()
            .any(|i| &i.key == key && i.decision == Decision::Permit)
    }

    pub fn item(&self, key: &ScopeItemKey) -> Option<&ItemState> {
        self.items.iter().find(|i| &i.key == key)
    }

    /// The permits that lapsed when `person` came of age (see
    /// [`ItemState::lapsed_at_majority`]), in key order.
    pub fn lapsed_at_majority<'a>(
        &'a self,
        person: &'a Person,
    ) -> impl Iterator<Item = &'a ItemState> + 'a {
        self.items
            .iter()
            .filter(move |i| i.lapsed_at_majority(person, self.as_of))
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    decision: Decision,
    version: u32,
    event_id: String,
    withdrawn: bool,
    proxy_signed_at: Option<DateTime<Utc>>,
}

/// The consent in force at `as_of`.
pub fn derive_consent(
    events: &[ConsentEvent],
    history: &VersionHistory,
    as_of: DateTime<Utc>,
) -> ConsentSnapshot {
    let mut ordered: Vec<&ConsentEvent> = events.iter().filter(|e| e.signed_at <= as_of).collect();
    ordered.sort_by(|a, b| {
        (a.signed_at, a.recorded_at, &a.id).cmp(&(b.signed_at, b.recorded_at, &b.id))
    });

    let mut status = ConsentStatus::None;
    let mut withdrawal_event: Option<&str> = None;
    let mut recorded: BTreeMap<&ScopeItemKey, Recorded> = BTreeMap::new();
    for event in ordered {
        let record = |decision, withdrawn| Recorded {
            decision,
            version: event.version,
            event_id: event.id.clone(),
            withdrawn,
            proxy_signed_at: event.by_proxy.then_some(event.signed_at),
        };
        // Changes and partial withdrawals only mean something while a grant
        // is active: without one they cannot revive a consent. The write
        // side refuses them (409); derivation ignores them all the same.
        if matches!(event.kind, EventKind::Amend | EventKind::WithdrawItems)
            && status != ConsentStatus::Active
        {
            continue;
        }
        match event.kind {
            EventKind::Grant => {
                recorded.clear();
                status = ConsentStatus::Active;
                withdrawal_event = None;
                for (key, decision) in &event.decisions {
                    recorded.insert(key, record(*decision, false));
                }
            }
            EventKind::Amend => {
                for (key, decision) in &event.decisions {
                    recorded.insert(key, record(*decision, false));
                }
            }
            EventKind::WithdrawAll => {
                status = ConsentStatus::Withdrawn;
                withdrawal_event = Some(&event.id);
            }
            EventKind::WithdrawItems => {
                for (key, _) in &event.decisions {
                    recorded.insert(key, record(Decision::Deny, true));
                }
            }
        }
    }

    let Some(current) = history.in_force_at(as_of) else {
        return ConsentSnapshot {
            as_of,
            status,
            version_in_force: None,
            items: Vec::new(),
        };
    };

    let items = current
        .changes
        .iter()
        .filter(|(_, change)| **change != ChangeKind::Removed)
        .map(|(key, _)| {
            let deny = |basis| ItemState {
                key: key.clone(),
                decision: Decision::Deny,
                basis,
                proxy_signed_at: None,
            };
            if let Some(event_id) = withdrawal_event {
                return deny(ItemBasis::Withdrawn {
                    event_id: event_id.to_owned(),
                });
            }
            let Some(r) = recorded.get(key) else {
                return deny(ItemBasis::NotAsked);
            };
            if r.withdrawn {
                return deny(ItemBasis::Withdrawn {
                    event_id: r.event_id.clone(),
                });
            }
            // A deny needs no re-consent: it stays a deny whatever the new
            // wording says. Only a permit can be invalidated.
            if r.decision == Decision::Permit {
                if let Some((changed_in_version, change)) =
                    history.reconsent_trigger(key, r.version, current.number)
                {
                    return deny(ItemBasis::NeedsReconsent {
                        event_id: r.event_id.clone(),
                        signed_on_version: r.version,
                        changed_in_version,
                        change,
                    });
                }
            }
            let basis = if r.version >= current.number {
                ItemBasis::Consented {
                    event_id: r.event_id.clone(),
                    version: r.version,
                }
            } else {
                ItemBasis::CarriedForward {
                    event_id: r.event_id.clone(),
                    signed_on_version: r.version,
                }
            };
            ItemState {
                key: key.clone(),
                decision: r.decision,
                basis,
                proxy_signed_at: r.proxy_signed_at,
            }
        })
        .collect();

    ConsentSnapshot {
        as_of,
        status,
        version_in_force: Some(current.number),
        items,
    }
}

#[cfg(test)]
mod tests;
