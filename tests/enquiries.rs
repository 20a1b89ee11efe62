//! Patients' enquiries (decision 0037): a question goes to the patient's
//! hospital, a report to the governance body; only they list, open and
//! answer it; each opening and answer is in the patient's log; messages
//! are sealed; a refused enquiry writes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use common::receipts::enrolled_patient;
use common::*;
use diesel::RunQueryDsl;
use serde_json::{json, Value};

on_both_backends!(only_those_an_enquiry_goes_to_open_and_answer_it);

/// Ids in a work list.
fn ids(list: &Value) -> Vec<String> {
    list["enquiries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn only_those_an_enquiry_goes_to_open_and_answer_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (alice, _) = enrolled_patient(&app, "MRN-ENQ-A").await;
    let (bob, _) = enrolled_patient(&app, "MRN-ENQ-B").await;
    let alice_token = app.patient_token(&alice);
    let bob_token = app.patient_token(&bob);
    app.wait_integrated().await;
    let log_index = |token: String| {
        let app = &app;
        async move {
            let (s, page) = app.get("/v1/portal/access-log", Some(&token)).await;
            assert_eq!(s, 200, "{page}");
            page["entries"][0]["index"].as_u64().unwrap()
        }
    };
    let alices_entry = log_index(alice_token.clone()).await;
    let bobs_entry = log_index(bob_token.clone()).await;

    // The patient asks and reports; what they write comes back as written.
    let question_text = "<script>alert(1)</script> 山田花子です。同意を広げたいです。";
    let (s, question) = app
        .post(
            "/v1/portal/enquiries",
            &alice_token,
            None,
            &json!({"kind": "question", "text": question_text, "about_family": "cancer"}),
        )
        .await;
    assert_eq!(s, 201, "{question}");
    assert_eq!(question["state"], "sent");
    assert_eq!(question["messages"][0]["text"], question_text);
    assert_eq!(question["about_family"], "cancer");
    let question_id = question["id"].as_str().unwrap().to_owned();
    // JSON Schema's integers include `12.0`, and so does the service; a
    // retry under the same key sends one report.
    let report_body = json!({"kind": "wrong_access", "text": "I do not know this reader.", "about_entry": alices_entry as f64});
    let (s, report, replayed) = app
        .post_keyed(
            "/v1/portal/enquiries",
            &alice_token,
            "report-1",
            &report_body,
        )
        .await;
    assert_eq!((s, replayed), (201, false), "{report}");
    let (s, again, replayed) = app
        .post_keyed(
            "/v1/portal/enquiries",
            &alice_token,
            "report-1",
            &report_body,
        )
        .await;
    assert_eq!((s, replayed), (200, true), "{again}");
    assert_eq!(again["id"], report["id"]);
    assert_eq!(app.count("patient_enquiries"), 2);
    assert_eq!(report["about_entry"], alices_entry);
    let report_id = report["id"].as_str().unwrap().to_owned();

    // Refusals write nothing: another patient's entry, a control character,
    // an unknown kind, a member of staff sending as a patient.
    let before = app.count("patient_enquiries");
    for (token, body) in [
        (
            &alice_token,
            json!({"kind": "wrong_access", "text": "x", "about_entry": bobs_entry}),
        ),
        (
            &alice_token,
            json!({"kind": "question", "text": "bell\u{7}"}),
        ),
        (&alice_token, json!({"kind": "complaint", "text": "x"})),
        (&alice_token, json!({"kind": "question", "text": "  "})),
    ] {
        let (s, body) = app.post("/v1/portal/enquiries", token, None, &body).await;
        assert_problem(s, &body, 422, "validation_failed");
    }
    let (s, _) = app
        .post(
            "/v1/portal/enquiries",
            &app.staff("hospital-a"),
            None,
            &json!({"kind": "question", "text": "x"}),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(app.count("patient_enquiries"), before);
    assert_eq!(app.count("enquiry_messages"), before);

    // What the patient wrote is sealed: no stored byte string holds it.
    #[derive(diesel::QueryableByName)]
    struct Sealed {
        #[diesel(sql_type = diesel::sql_types::Binary)]
        ciphertext: Vec<u8>,
    }
    let mut conn = app.raw_db();
    let sealed: Vec<Sealed> = genomegate::db_run!(&mut conn, c =>
        diesel::sql_query("SELECT ciphertext FROM enquiry_messages").load(c).unwrap());
    assert_eq!(sealed.len(), 2);
    let needle = "山田花子".as_bytes();
    assert!(sealed
        .iter()
        .all(|m| !m.ciphertext.windows(needle.len()).any(|w| w == needle)));

    // Work lists: the hospital sees its patient's question, the governance
    // body the report, another hospital nothing; none of them the text.
    let hospital = app.staff("hospital-a");
    let other_hospital = app.staff("hospital-b");
    let governance = token_for(&["governance"], "governance", "officer-1");
    let (s, list) = app.get("/v1/enquiries", Some(&hospital)).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(ids(&list), vec![question_id.clone()]);
    assert!(!list.to_string().contains("山田"), "{list}");
    let (_, list) = app.get("/v1/enquiries?state=sent", Some(&governance)).await;
    assert_eq!(ids(&list), vec![report_id.clone()]);
    let (_, list) = app.get("/v1/enquiries", Some(&other_hospital)).await;
    assert!(ids(&list).is_empty());
    let (s, body) = app.get("/v1/enquiries?state=closed", Some(&hospital)).await;
    assert_problem(s, &body, 422, "validation_failed");

    // Those it did not go to cannot tell it exists.
    for (token, id) in [
        (&other_hospital, &question_id),
        (&governance, &question_id),
        (&hospital, &report_id),
        (&hospital, &"no-such-enquiry".to_owned()),
    ] {
        let (s, body) = app.get(&format!("/v1/enquiries/{id}"), Some(token)).await;
        assert_problem(s, &body, 404, "not_found");
    }
    assert_eq!(app.log_entries_with_action("enquiry_read"), 0);

    // Opening is logged and moves it to `read`.
    let (s, opened) = app
        .get(&format!("/v1/enquiries/{question_id}"), Some(&hospital))
        .await;
    assert_eq!(s, 200, "{opened}");
    assert_eq!(opened["patient_ref"], alice.as_str());
    assert_eq!(opened["state"], "read");
    assert_eq!(opened["messages"][0]["text"], question_text);
    assert_eq!(app.log_entries_with_action("enquiry_read"), 1);
    let (_, mine) = app.get("/v1/portal/enquiries", Some(&alice_token)).await;
    let states: Vec<&str> = mine["enquiries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"read") && states.contains(&"sent"),
        "{mine}"
    );

    // Answering is logged once, whatever the retries.
    let answer = json!({"text": "ご質問ありがとうございます。外来でご説明します。"});
    let path = format!("/v1/enquiries/{question_id}/answers");
    let (s, answered, replayed) = app.post_keyed(&path, &hospital, "ans-1", &answer).await;
    assert_eq!(s, 201, "{answered}");
    assert!(!replayed);
    let (s, again, replayed) = app.post_keyed(&path, &hospital, "ans-1", &answer).await;
    assert_eq!((s, replayed), (200, true));
    assert_eq!(again, answered);
    assert_eq!(answered["state"], "answered");
    assert_eq!(answered["messages"][1]["author"], "staff");
    assert_eq!(answered["messages"][1]["author_org"], "hospital-a");
    assert_eq!(app.log_entries_with_action("enquiry_answer"), 1);
    let (s, body) = app
        .post(&path, &other_hospital, None, &json!({"text": "x"}))
        .await;
    assert_problem(s, &body, 404, "not_found");
    let (s, body) = app.post(&path, &hospital, None, &json!({"text": ""})).await;
    assert_problem(s, &body, 422, "validation_failed");
    assert_eq!(app.count("enquiry_messages"), 3);

    // The governance body answers the report without opening it first.
    let (s, answered) = app
        .post(
            &format!("/v1/enquiries/{report_id}/answers"),
            &governance,
            None,
            &json!({"text": "We are looking into it."}),
        )
        .await;
    assert_eq!(s, 201, "{answered}");

    // The patient reads both answers and sees who opened and answered
    // what, in plain words; the other patient sees nothing of it.
    let (_, mine) = app.get("/v1/portal/enquiries", Some(&alice_token)).await;
    assert!(mine["enquiries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["state"] == "answered" && e["messages"].as_array().unwrap().len() == 2));
    app.wait_integrated().await;
    let (_, log) = app
        .get("/v1/portal/access-log?lang=en", Some(&alice_token))
        .await;
    let told: Vec<String> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["entry"]["action"]
                .as_str()
                .unwrap()
                .starts_with("enquiry_")
        })
        .map(|e| e["explanation"]["summary"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(told.len(), 3, "{told:?}");
    assert!(told
        .iter()
        .any(|t| t.contains("opened your question to your hospital")));
    assert!(told
        .iter()
        .any(|t| t.contains("answered your report of a wrong access")));
    let (_, theirs) = app.get("/v1/portal/enquiries", Some(&bob_token)).await;
    assert_eq!(theirs["enquiries"], json!([]));
}
