//! Webhook signatures in the Standard Webhooks scheme: HMAC-SHA256 over
//! `id.timestamp.body`, sent as `webhook-signature: v1,<base64>` with the
//! `webhook-id` and `webhook-timestamp` headers. Receivers check the
//! signature and reject timestamps outside their tolerance (replays).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::hmac;

/// The associated data binding a webhook's sealed secret to its endpoint
/// row, so a secret copied onto another row does not open.
pub fn secret_aad(endpoint_id: &str) -> Vec<u8> {
    format!("genomegate/webhook/v1\0{endpoint_id}").into_bytes()
}

/// The `webhook-signature` header value.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// Checks a `webhook-signature` header (which may list several
/// space-separated signatures) in constant time, and the timestamp against
/// `now` within `tolerance_seconds`.
pub fn verify(
    secret: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_seconds: i64,
) -> bool {
    if (now - timestamp).abs() > tolerance_seconds {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let message = [
        id.as_bytes(),
        b".",
        timestamp.to_string().as_bytes(),
        b".",
        body,
    ]
    .concat();
    header.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|tag| hmac::verify(&key, &message, &tag).is_ok())
    })
}

/// A fresh webhook secret, shown to its owner once: `whsec_` and base64.
pub fn new_secret() -> Result<(String, Vec<u8>), String> {
    let bytes = crate::keyfile::random_bytes(32)?;
    Ok((format!("whsec_{}", STANDARD.encode(&bytes)), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_bind_id_time_and_body() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let header = sign(secret, "log-7", 1_700_000_000, b"{}");
        assert!(verify(
            secret,
            "log-7",
            1_700_000_000,
            b"{}",
            &header,
            1_700_000_010,
            300
        ));
        assert!(!verify(
            secret,
            "log-8",
            1_700_000_000,
            b"{}",
            &header,
            1_700_000_010,
            300
        ));
        assert!(!verify(
            secret,
            "log-7",
            1_700_000_001,
            b"{}",
            &header,
            1_700_000_010,
            300
        ));
        assert!(!verify(
            secret,
            "log-7",
            1_700_000_000,
            b"{ }",
            &header,
            1_700_000_010,
            300
        ));
        assert!(!verify(
            b"another secret",
            "log-7",
            1_700_000_000,
            b"{}",
            &header,
            1_700_000_010,
            300
        ));
        assert!(
            !verify(
                secret,
                "log-7",
                1_700_000_000,
                b"{}",
                &header,
                1_700_009_999,
                300
            ),
            "stale"
        );
        // Standard Webhooks test vector.
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
