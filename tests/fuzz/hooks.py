"""Schemathesis hooks for GenomeGate's contract fuzz (tests/fuzz/run).

Each operation is called with a token of the role that uses it, so the
fuzzer reaches past the authorization gate; `ignored_auth` still tries
every authenticated operation without a token and with a bad one.
"""

import os
import re
import uuid

import schemathesis

try:  # Request-shape probes of the coverage phase are not requests a client makes.
    from schemathesis.specs.openapi.checks import is_unexpected_http_status_case
except ImportError:  # pragma: no cover
    def is_unexpected_http_status_case(case):
        return False

# The role whose token calls each operation (operationId -> role). An
# operation not listed is public, or called with the governance token.
ROLE_OF = {
    **dict.fromkeys(
        ["list_versions", "get_version", "create_draft", "update_draft", "publish_version"],
        "consent_admin",
    ),
    **dict.fromkeys(
        [
            "register_consent", "change_consent", "withdraw_consent", "read_consent",
            "list_events", "export_fhir", "lookup_patient", "update_patient_status",
            "issue_enrollment_code", "reconsent_tasks", "register_sample", "get_sample",
            "correct_object", "list_centers", "authorize_center", "revoke_center",
            "add_hospital_webhook", "hospital_webhook_deliveries", "unseal",
        ],
        "hospital_staff",
    ),
    **dict.fromkeys(["open_request", "vote"], "review_committee"),
    **dict.fromkeys(["audit_log", "screening", "screening_reports"], "auditor"),
    **dict.fromkeys(
        [
            "patient_samples", "my_access_log", "my_consents", "my_notifications",
            "my_preferences", "set_my_preferences", "my_webhooks", "add_my_webhook",
            "remove_my_webhook", "my_webhook_deliveries", "my_enquiries", "send_enquiry",
        ],
        "patient",
    ),
    **dict.fromkeys(
        [
            "list_datasets", "current_agreement_text", "agreement_text", "accept_agreement",
            "list_applications", "submit_application", "get_application", "create_release",
            "releases_of_application", "get_release", "manifest", "recalls", "issue_visas",
            "visas_issued", "recall_webhooks", "add_recall_webhook", "remove_recall_webhook",
            "recall_webhook_deliveries",
        ],
        "researcher",
    ),
    "resolve_handle": "data_store",
}


def token_for(operation_id):
    role = ROLE_OF.get(operation_id, "governance")
    return os.environ[f"FUZZ_TOKEN_{role.upper()}"]


@schemathesis.auth(refresh_interval=None)
class RoleToken:
    """The token of the role that uses the operation."""

    def get(self, case, context):
        return token_for(context.operation.definition.raw.get("operationId", ""))

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


KEY = re.compile(r"^[!-~]{1,128}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    """A well-formed Idempotency-Key is made unique per call: a replay
    answers what the first call created, which the stateful phase may have
    deleted since (replays have tests of their own). Malformed keys are
    sent as generated."""
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and KEY.match(key):
        headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"


# Refusals of well-formed requests that no schema can express: rules
# across fields, against the clock, or against stored state. Each names the
# operation and the field (a prefix) its `validation_failed` names; any
# other `validation_failed` (or `malformed_json`) of a request the
# description calls valid means the description is wrong.
CROSS_FIELD_RULES = {
    # A signature may not lie in the future.
    ("register_consent", "signed_at"), ("change_consent", "signed_at"),
    ("withdraw_consent", "signed_at"),
    # A consent decides every item of its version; a change names the
    # version of its own family.
    ("register_consent", "decisions"), ("change_consent", "decisions"),
    ("change_consent", "document_version"), ("withdraw_consent", "items"),
    # A patient named once, by local ID or by pseudonym; a germline sample
    # has no tumour category; object names differ within a sample.
    ("register_sample", "local_patient_id"), ("register_sample", "patient_ref"),
    ("register_sample", "tumour_category"), ("register_sample", "objects"),
    # Dates: a death not in the future, an attestation's expiry after its
    # completion, a period that ends after it starts and not before today.
    ("update_patient_status", "deceased_on"), ("update_patient_status", "majority_on"),
    ("record_attestation", "completed_on"), ("record_attestation", "expires_on"),
    ("submit_application", "starts_on"), ("submit_application", "ends_on"),
    # Members: at most 100 in all, partners of other organizations.
    ("submit_application", "members"), ("submit_application", "partner_members"),
    # A member organization registered abroad makes the use a transfer abroad.
    ("submit_application", "recipients_abroad"),
    # A screening covers at most 31 days, from before to.
    ("screening", "from"), ("screening", "to"), ("audit_log", "from"),
    # A draft declares its items against the version in force.
    ("create_draft", "items"), ("update_draft", "items"), ("publish_version", "items"),
    # A webhook's host must be public, on an allowed port.
    ("add_hospital_webhook", "url"), ("add_my_webhook", "url"),
    ("add_recall_webhook", "url"),
    # Dataset names are unique; an agreement text is published once.
    ("create_dataset", "name"), ("publish_agreement_text", "body"),
    # Only registered samples join a dataset; an application names existing
    # datasets.
    ("add_dataset_samples", "samples"), ("submit_application", "datasets"),
    # A report is about one of the patient's own entries.
    ("send_enquiry", "about_entry"),
}


def _fields(problem):
    return [e.get("field", "") for e in problem.get("errors", [])]


@schemathesis.check
def valid_requests_are_not_refused_for_their_shape(ctx, response, case):
    """A request generated from the description is never refused as
    malformed: the description states every rule of shape the service
    enforces."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or is_unexpected_http_status_case(case):
        return None
    if any(not component.mode.is_positive for component in meta.components.values()):
        return None
    if response.status_code not in (400, 422):
        return None
    try:
        problem = response.json()
    except ValueError:
        return None
    code = problem.get("code")
    operation = case.operation.definition.raw.get("operationId", "")
    explained = all(
        any(
            field == name or field.startswith(name + ".") or field.startswith(name + "[")
            for (op, name) in CROSS_FIELD_RULES
            if op == operation
        )
        for field in _fields(problem)
    ) and bool(_fields(problem))
    if code == "malformed_json" or (code == "validation_failed" and not explained):
        raise AssertionError(
            f"a request valid by the description ({meta.phase.name} phase"
            f"{', ' + str(getattr(meta.phase.data, 'scenario', '')) if hasattr(meta.phase.data, 'scenario') else ''}"
            f"; {', '.join(f'{k}: {v.mode}' for k, v in meta.components.items())}) was refused as "
            f"`{code}`: {response.text[:500]}"
        )
    return None
