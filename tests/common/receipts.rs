//! Access-log helpers shared by the log and delivery tests: enrolled
//! patients and receipt checks.

use super::{all_permit, first_draft, read, TestApp};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use diesel::RunQueryDsl;
use genomegate::ledger::checkpoint;
use genomegate::ledger::merkle::{leaf_hash, verify_inclusion, Hash};
use serde_json::{json, Value};

/// Registers a consented patient; returns (patient_ref, enrollment code).
pub async fn enrolled_patient(app: &TestApp, local: &str) -> (String, String) {
    #[derive(diesel::QueryableByName)]
    struct Active {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let mut conn = app.raw_db();
    let active: Vec<Active> = genomegate::db_run!(&mut conn, c => diesel::sql_query(
        "SELECT id FROM document_versions WHERE status = 'active'"
    ).load(c).unwrap());
    let version = match active.into_iter().next() {
        Some(v) => v.id,
        None => app.publish("cancer", &first_draft()).await,
    };
    let (s, body) = app
        .grant(
            "hospital-a",
            local,
            &version,
            all_permit(),
            &format!("k-{local}"),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    (
        body["patient_ref"].as_str().unwrap().to_owned(),
        body["enrollment_code"]["code"].as_str().unwrap().to_owned(),
    )
}

pub async fn enroll(app: &TestApp, code: &str) -> Value {
    let (s, body) = read(
        app.plain_client
            .post(app.url("/v1/portal/enroll"))
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    body
}

/// A JSON list of base64 hashes (a proof), decoded.
pub fn hashes(list: &Value) -> Vec<Hash> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

/// Checks a receipt: the checkpoint is signed by the log's key and the
/// entry bytes are included at `index` under its root.
pub async fn assert_receipt(app: &TestApp, n: &Value) {
    let keys = app.get("/v1/log/keys", None).await.1;
    let key = keys["verifier_keys"][0].as_str().unwrap();
    let cp = checkpoint::open(n["checkpoint"].as_str().unwrap(), key).expect("signed checkpoint");
    let bytes = STANDARD.decode(n["entry_bytes"].as_str().unwrap()).unwrap();
    let proof = hashes(&n["inclusion_proof"]);
    let index = n["index"].as_u64().unwrap();
    assert_eq!(cp.size, n["tree_size"].as_u64().unwrap());
    verify_inclusion(&leaf_hash(&bytes), index, cp.size, &proof, &cp.root)
        .expect("inclusion proof verifies");
}
