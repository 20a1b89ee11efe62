//! The single authorization enforcement point.
//!
//! Rules live in `policies/*.cedar`, checked against
//! `policies/genomegate.cedarschema` in strict mode at start-up; a policy that
//! does not validate stops the service. Everything not permitted is denied.

use super::Caller;
use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

pub const SCHEMA_FILE: &str = "genomegate.cedarschema";

/// Actions, named as in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    DocumentReadPublished,
    DocumentReadDraft,
    DocumentCreate,
    DocumentUpdate,
    DocumentPublish,
    ConsentRegister,
    ConsentChange,
    ConsentWithdraw,
    /// A patient withdrawing their own consent in the portal's pages.
    ConsentWithdrawOwn,
    ConsentRead,
    PatientLookup,
    PatientUpdateStatus,
    ReconsentList,
    SampleRegister,
    SampleCorrect,
    SampleRead,
    SequencingAuthorize,
    RecontactOpen,
    RecontactApprove,
    RecontactUnseal,
    RecontactRead,
    /// A patient sending an enquiry in the portal's pages.
    EnquirySendOwn,
    /// Opening and answering a patient's question (their hospital).
    EnquiryHandleQuestion,
    /// Opening and answering a patient's report (governance).
    EnquiryHandleReport,
    LogAudit,
    PortalUse,
    EnrollmentIssue,
    WebhookManageHospital,
    RegistryManage,
    DatasetRead,
    ApplicationSubmit,
    ApplicationRead,
    ApplicationVote,
    AgreementAccept,
    ReleaseCreate,
    VisaIssue,
    HandleResolve,
}

impl Action {
    pub const ALL: [Action; 37] = [
        Action::DocumentReadPublished,
        Action::DocumentReadDraft,
        Action::DocumentCreate,
        Action::DocumentUpdate,
        Action::DocumentPublish,
        Action::ConsentRegister,
        Action::ConsentChange,
        Action::ConsentWithdraw,
        Action::ConsentWithdrawOwn,
        Action::ConsentRead,
        Action::PatientLookup,
        Action::PatientUpdateStatus,
        Action::ReconsentList,
        Action::SampleRegister,
        Action::SampleCorrect,
        Action::SampleRead,
        Action::SequencingAuthorize,
        Action::RecontactOpen,
        Action::RecontactApprove,
        Action::RecontactUnseal,
        Action::RecontactRead,
        Action::EnquirySendOwn,
        Action::EnquiryHandleQuestion,
        Action::EnquiryHandleReport,
        Action::LogAudit,
        Action::PortalUse,
        Action::EnrollmentIssue,
        Action::WebhookManageHospital,
        Action::RegistryManage,
        Action::DatasetRead,
        Action::ApplicationSubmit,
        Action::ApplicationRead,
        Action::ApplicationVote,
        Action::AgreementAccept,
        Action::ReleaseCreate,
        Action::VisaIssue,
        Action::HandleResolve,
    ];

    /// The action's position in `ALL` (the declaration order).
    fn index(self) -> usize {
        self as usize
    }

    pub fn cedar_id(self) -> &'static str {
        match self {
            Action::DocumentReadPublished => "document.read_published",
            Action::DocumentReadDraft => "document.read_draft",
            Action::DocumentCreate => "document.create",
            Action::DocumentUpdate => "document.update",
            Action::DocumentPublish => "document.publish",
            Action::ConsentRegister => "consent.register",
            Action::ConsentChange => "consent.change",
            Action::ConsentWithdraw => "consent.withdraw",
            Action::ConsentWithdrawOwn => "consent.withdraw_own",
            Action::ConsentRead => "consent.read",
            Action::PatientLookup => "patient.lookup",
            Action::PatientUpdateStatus => "patient.update_status",
            Action::ReconsentList => "reconsent.list",
            Action::SampleRegister => "sample.register",
            Action::SampleCorrect => "sample.correct",
            Action::SampleRead => "sample.read",
            Action::SequencingAuthorize => "sequencing.authorize",
            Action::RecontactOpen => "recontact.open",
            Action::RecontactApprove => "recontact.approve",
            Action::RecontactUnseal => "recontact.unseal",
            Action::RecontactRead => "recontact.read",
            Action::EnquirySendOwn => "enquiry.send_own",
            Action::EnquiryHandleQuestion => "enquiry.handle_question",
            Action::EnquiryHandleReport => "enquiry.handle_report",
            Action::LogAudit => "log.audit",
            Action::PortalUse => "portal.use",
            Action::EnrollmentIssue => "enrollment.issue",
            Action::WebhookManageHospital => "webhook.manage_hospital",
            Action::RegistryManage => "registry.manage",
            Action::DatasetRead => "dataset.read",
            Action::ApplicationSubmit => "application.submit",
            Action::ApplicationRead => "application.read",
            Action::ApplicationVote => "application.vote",
            Action::AgreementAccept => "agreement.accept",
            Action::ReleaseCreate => "release.create",
            Action::VisaIssue => "visa.issue",
            Action::HandleResolve => "handle.resolve",
        }
    }
}

/// What an action is performed on, with the attributes policies look at.
#[derive(Debug, Clone)]
pub enum Resource<'a> {
    Document {
        id: &'a str,
        status: &'a str,
    },
    Patient {
        pseudonym: &'a str,
        hospital: &'a str,
        /// Sequencing centres the patient's hospital has authorised.
        centers: &'a [String],
    },
    Hospital {
        org: &'a str,
    },
    /// The access log as a whole.
    AccessLog,
    /// The governance body's registers: organizations, attestations,
    /// datasets, agreement texts and sanctions; and handle resolution.
    Registry,
    /// A data-use application of `org` (also for one being submitted),
    /// with the organizations of its partner members.
    Application {
        id: &'a str,
        org: &'a str,
        partner_orgs: &'a [String],
    },
}

pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    /// Each action's share of `policies`, indexed by `Action::index`: the
    /// policies whose scope can name that action. Cedar checks the scope
    /// of every policy in the set on every request (about a microsecond a
    /// policy here, most of a decision's cost), and a request can only
    /// ever match the policies of its own action.
    by_action: Vec<PolicySet>,
    authorizer: Authorizer,
    action_uids: HashMap<&'static str, EntityUid>,
    /// Whether the schema admits an anonymous principal for each action,
    /// indexed by `Action::index`. An anonymous caller of any other action
    /// is refused before a request is built: that is a refusal, not a fault.
    admits_anonymous: Vec<bool>,
    /// Every entity type a request names, parsed once: parsing a type name
    /// runs Cedar's parser, which cost more than the decision itself.
    type_names: HashMap<&'static str, EntityTypeName>,
}

const ENTITY_TYPES: [&str; 8] = [
    "GenomeGate::Anonymous",
    "GenomeGate::User",
    "GenomeGate::Document",
    "GenomeGate::Patient",
    "GenomeGate::AccessLog",
    "GenomeGate::Registry",
    "GenomeGate::Application",
    "GenomeGate::Hospital",
];

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.policies.policies().count())
            .finish()
    }
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let name = EntityTypeName::from_str(type_name).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
}

/// For every action in `Action::ALL` order, the policies whose action
/// scope can match it: unconstrained ones, `action == A`, and
/// `action in [...]` naming A. The schema has no action groups (start-up
/// refuses them), so any other policy's scope is false for A, and leaving
/// it out cannot change a decision.
fn slice_by_action(
    policies: &PolicySet,
    action_uids: &HashMap<&'static str, EntityUid>,
) -> Result<Vec<PolicySet>, String> {
    Action::ALL
        .iter()
        .map(|action| {
            let me = action_uids
                .get(action.cedar_id())
                .ok_or_else(|| format!("action {} missing", action.cedar_id()))?;
            let mut slice = PolicySet::new();
            for policy in policies.policies() {
                let applies = match policy.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(named) => &named == me,
                    ActionConstraint::In(named) => named.contains(me),
                };
                if applies {
                    slice.add(policy.clone()).map_err(|e| e.to_string())?;
                }
            }
            Ok(slice)
        })
        .collect()
}

impl PolicyEngine {
    /// Loads and validates `dir/genomegate.cedarschema` and every
    /// `dir/*.cedar`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let schema_src = std::fs::read_to_string(dir.join(SCHEMA_FILE))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(SCHEMA_FILE).display()))?;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read policy directory {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
            .collect();
        files.sort();
        let mut sources = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            sources.push((path.display().to_string(), text));
        }
        Self::from_sources(&schema_src, &sources)
    }

    pub fn from_sources(
        schema_src: &str,
        policy_sources: &[(String, String)],
    ) -> Result<Self, String> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(schema_src).map_err(|e| format!("policy schema: {e}"))?;
        let mut policies = PolicySet::new();
        for (name, text) in policy_sources {
            let set = PolicySet::from_str(text).map_err(|e| format!("{name}: {e}"))?;
            for (index, policy) in set.policies().enumerate() {
                // Cedar numbers policies per parse (`policy0`, …); name them by
                // their `@id` annotation so ids are unique and readable in logs.
                let id = policy
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{name}#{index}"));
                policies
                    .add(policy.new_id(cedar_policy::PolicyId::new(id)))
                    .map_err(|e| format!("{name}: {e} (policy ids must be unique across files)"))?;
            }
        }
        if policies.policies().next().is_none() {
            return Err("no policies found: everything would be denied".into());
        }
        // A request carries only its principal and resource, not the action
        // hierarchy, so `action in [group]` would never match a member:
        // refuse groups rather than deny quietly.
        if let Some(group) = schema.action_groups().next() {
            return Err(format!(
                "policy schema: action groups are not supported ({group}); name each action"
            ));
        }
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation
                .validation_errors()
                .map(|e| e.to_string())
                .collect();
            return Err(format!(
                "policies do not validate against the schema: {}",
                errors.join("; ")
            ));
        }
        let mut type_names = HashMap::new();
        for name in ENTITY_TYPES {
            type_names.insert(
                name,
                EntityTypeName::from_str(name).map_err(|e| e.to_string())?,
            );
        }
        let mut action_uids = HashMap::new();
        for action in Action::ALL {
            action_uids.insert(
                action.cedar_id(),
                uid("GenomeGate::Action", action.cedar_id())?,
            );
        }
        let by_action = slice_by_action(&policies, &action_uids)?;
        let anonymous = type_names
            .get("GenomeGate::Anonymous")
            .ok_or("entity type GenomeGate::Anonymous missing")?;
        let admits_anonymous = Action::ALL
            .iter()
            .map(|action| {
                action_uids.get(action.cedar_id()).is_some_and(|uid| {
                    schema
                        .principals_for_action(uid)
                        .is_some_and(|mut principals| principals.any(|p| p == anonymous))
                })
            })
            .collect();
        Ok(Self {
            schema,
            policies,
            by_action,
            authorizer: Authorizer::new(),
            action_uids,
            admits_anonymous,
            type_names,
        })
    }

    /// Whether `caller` may perform `action` on `resource`. An anonymous
    /// caller of an action only users may take is denied at once; any other
    /// failure to build the request (a bug, not a user error) is a denial,
    /// and logged.
    pub fn is_allowed(&self, caller: &Caller, action: Action, resource: &Resource<'_>) -> bool {
        if matches!(caller, Caller::Anonymous) && !self.admits_anonymous(action) {
            return false;
        }
        match self.decide(caller, action, resource) {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::error!(error = %e, action = action.cedar_id(), "authorization request could not be built; denying");
                false
            }
        }
    }

    /// Whether the schema lets an anonymous caller take `action` at all.
    pub fn admits_anonymous(&self, action: Action) -> bool {
        self.admits_anonymous
            .get(action.index())
            .copied()
            .unwrap_or(false)
    }

    fn uid(&self, type_name: &'static str, id: &str) -> Result<EntityUid, String> {
        let name = self
            .type_names
            .get(type_name)
            .cloned()
            .ok_or_else(|| format!("entity type {type_name} missing"))?;
        Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
    }

    fn decide(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource<'_>,
    ) -> Result<bool, String> {
        let (request, entities) = self.request_of(caller, action, resource)?;
        let policies = self
            .by_action
            .get(action.index())
            .ok_or_else(|| format!("no policy slice for {}", action.cedar_id()))?;
        let response = self.authorizer.is_authorized(&request, policies, &entities);
        Ok(response.decision() == Decision::Allow)
    }

    /// The Cedar request and its entities.
    fn request_of(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource<'_>,
    ) -> Result<(Request, Entities), String> {
        let (principal_entity, resource_entity) = self.entities_of(caller, resource)?;
        let principal_uid = principal_entity.uid();
        let resource_uid = resource_entity.uid();
        // The entities are not checked against the schema here: they are
        // built only by `entities_of`, whose every shape a test checks
        // against the schema, and the check cost more than the decision
        // (decision 0016). The request is still checked, so an action
        // named with the wrong kind of resource is refused.
        let entities = Entities::from_entities([principal_entity, resource_entity], None)
            .map_err(|e| e.to_string())?;
        let action_uid = self
            .action_uids
            .get(action.cedar_id())
            .cloned()
            .ok_or_else(|| format!("action {} missing", action.cedar_id()))?;
        let request = Request::new(
            principal_uid,
            action_uid,
            resource_uid,
            Context::empty(),
            Some(&self.schema),
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// The principal and resource entities of a request.
    fn entities_of(
        &self,
        caller: &Caller,
        resource: &Resource<'_>,
    ) -> Result<(Entity, Entity), String> {
        let principal_entity = match caller {
            Caller::Anonymous => Entity::new_no_attrs(
                self.uid("GenomeGate::Anonymous", "anonymous")?,
                HashSet::new(),
            ),
            Caller::User(p) => {
                let mut attrs = HashMap::from([
                    (
                        "org".to_owned(),
                        RestrictedExpression::new_string(p.org.clone()),
                    ),
                    (
                        "roles".to_owned(),
                        RestrictedExpression::new_set(
                            p.roles
                                .iter()
                                .map(|r| RestrictedExpression::new_string(r.as_str().to_owned())),
                        ),
                    ),
                ]);
                if let Some(patient_ref) = &p.patient_ref {
                    attrs.insert(
                        "patient_ref".to_owned(),
                        RestrictedExpression::new_string(patient_ref.clone()),
                    );
                }
                Entity::new(
                    self.uid("GenomeGate::User", &p.subject)?,
                    attrs,
                    HashSet::new(),
                )
                .map_err(|e| e.to_string())?
            }
        };
        let string_attr =
            |k: &str, v: &str| (k.to_owned(), RestrictedExpression::new_string(v.to_owned()));
        let resource_entity = match resource {
            Resource::Document { id, status } => Entity::new(
                self.uid("GenomeGate::Document", id)?,
                HashMap::from([string_attr("status", status)]),
                HashSet::new(),
            ),
            Resource::Patient {
                pseudonym,
                hospital,
                centers,
            } => Entity::new(
                self.uid("GenomeGate::Patient", pseudonym)?,
                HashMap::from([
                    string_attr("pseudonym", pseudonym),
                    string_attr("hospital", hospital),
                    (
                        "sequencing_centers".to_owned(),
                        RestrictedExpression::new_set(
                            centers
                                .iter()
                                .map(|c| RestrictedExpression::new_string(c.clone())),
                        ),
                    ),
                ]),
                HashSet::new(),
            ),
            Resource::AccessLog => Ok(Entity::new_no_attrs(
                self.uid("GenomeGate::AccessLog", "access-log")?,
                HashSet::new(),
            )),
            Resource::Registry => Ok(Entity::new_no_attrs(
                self.uid("GenomeGate::Registry", "registry")?,
                HashSet::new(),
            )),
            Resource::Application {
                id,
                org,
                partner_orgs,
            } => Entity::new(
                self.uid("GenomeGate::Application", id)?,
                HashMap::from([
                    string_attr("org", org),
                    (
                        "partner_orgs".to_owned(),
                        RestrictedExpression::new_set(
                            partner_orgs
                                .iter()
                                .map(|o| RestrictedExpression::new_string(o.clone())),
                        ),
                    ),
                ]),
                HashSet::new(),
            ),
            Resource::Hospital { org } => Entity::new(
                self.uid("GenomeGate::Hospital", org)?,
                HashMap::from([string_attr("org", org)]),
                HashSet::new(),
            ),
        }
        .map_err(|e| e.to_string())?;
        Ok((principal_entity, resource_entity))
    }
}

#[cfg(test)]
mod tests;
