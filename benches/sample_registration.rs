//! Genome sample registrations over loopback HTTPS against the real service
//! on PostgreSQL from 32 concurrent clients, beside the raw database doing
//! the same writes in the same run.
//!
//!     cargo bench --bench sample_registration
//!
//! Each sample carries two data objects (a CRAM and a VCF). Environment as
//! for `consent_registration`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

use genomegate::db::consents::ensure_patient;
use genomegate::db::samples::{insert_sample, ObjectRow, SampleRow};
use serde_json::json;
use std::time::Duration;

const PATIENTS: u64 = 2_000;

fn main() {
    let bench = support::Bench::start();
    let staff = bench.token(&["hospital_staff"], "hospital-a");
    bench.publish_cancer(&["ccat_registration", "recontact"]);
    // Patients first: samples name existing patients.
    bench.runtime.block_on(async {
        for n in 0..PATIENTS {
            let body = json!({"local_patient_id": format!("MRN-{n:06}"), "document_version": "cancer-v1",
                "decisions": {"ccat_registration": "permit", "recontact": "permit"}, "signer": {"kind": "patient"},
                "explained_by": "bench", "signed_at": chrono::Utc::now().to_rfc3339(),
                "form_hash": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"});
            let r = bench.client.post(format!("{}/v1/consents", bench.base)).bearer_auth(&staff).header("Idempotency-Key", format!("p{n}")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 201);
        }
    });

    let register = {
        let (client, base) = (bench.client.clone(), bench.base.clone());
        move |n: u64| {
            let (client, base, staff) = (client.clone(), base.clone(), staff.clone());
            async move {
                let body = json!({
                    "local_patient_id": format!("MRN-{:06}", n % PATIENTS),
                    "sample_ref": format!("SPEC-{n:09}"),
                    "kind": "tumour", "assay": "wgs", "tumour_category": "solid",
                    "objects": [
                        {"name": "tumour.cram", "uri": format!("s3://genome-store/{n}/tumour.cram"), "size_bytes": 90_000_000_000i64, "sha256": "a".repeat(64), "format": "cram"},
                        {"name": "somatic.vcf", "uri": format!("s3://genome-store/{n}/somatic.vcf.gz"), "size_bytes": 40_000_000, "sha256": "b".repeat(64), "format": "vcf"},
                    ],
                });
                match client
                    .post(format!("{base}/v1/samples"))
                    .bearer_auth(&staff)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 201 => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        }
    };
    bench.http_phase(Duration::from_secs(2), register.clone());
    let (service, errors) = bench.http_phase(Duration::from_secs(bench.seconds), register);

    // Raw: a patient row (idempotent) plus the sample and its two objects.
    let raw = bench.raw_phase(move |conn, n| {
        let now = chrono::Utc::now().naive_utc();
        let patient = format!("{:064x}", n % PATIENTS);
        ensure_patient(conn, &patient, "hospital-raw", chrono::Utc::now())?;
        let genome_id = format!("GSR-{n:016}");
        let sample = SampleRow {
            genome_id: genome_id.clone(),
            key_version: 1,
            patient_pseudonym: patient,
            hospital_org: "hospital-raw".into(),
            registered_by_org: "hospital-raw".into(),
            registered_by: "bench".into(),
            kind: "tumour".into(),
            assay: "wgs".into(),
            test_order_ref: None,
            ccat_report_id: None,
            tumour_category: Some("solid".into()),
            request_hash: "raw".into(),
            registered_at: now,
        };
        let object = |name: &str, format: &str, class: &str| ObjectRow {
            genome_id: genome_id.clone(),
            name: name.into(),
            version: 1,
            uri: format!("s3://raw/{n}/{name}"),
            size_bytes: 1,
            sha256: "c".repeat(64),
            format: format.into(),
            legal_class: class.into(),
            correction_reason: None,
            registered_by: "bench".into(),
            registered_at: now,
        };
        insert_sample(
            conn,
            &sample,
            &[
                object("tumour.cram", "cram", "identification_code"),
                object("somatic.vcf", "vcf", "identification_code"),
            ],
        )
    });
    bench.report(
        "sample_registration (2 data objects per sample)",
        "HTTPS, auth, policy, patient lookup, idempotency, URI check, 1 tx",
        &service,
        errors,
        &raw,
        ">= 1500/s with 32 clients",
    );
}
