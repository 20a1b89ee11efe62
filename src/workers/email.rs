//! Email to patients who asked for it: one short message per new entry of
//! a kind they chose, saying only that there is one and where to read it.
//! Delivery state (attempts, backoff, dead letters) is the dispatcher's, as
//! for webhooks; this module only speaks SMTP.

use crate::ledger::entry::LogAction;
use crate::notify::NoticeKind;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Where the patient reads their history.
    portal_url: String,
}

impl Mailer {
    /// The mailer `notify.smtp_url` configures, if any.
    pub(super) fn from_config(config: &crate::config::Config) -> Result<Option<Mailer>, String> {
        let Some(url) = &config.notify.smtp_url else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|e| format!("notify.smtp_url: {e}"))?
            .timeout(Some(std::time::Duration::from_millis(
                config.notify.timeout_ms,
            )))
            .build();
        let from = config
            .notify
            .email_from
            .parse()
            .map_err(|e| format!("notify.email_from: {e}"))?;
        Ok(Some(Mailer {
            transport,
            from,
            portal_url: format!(
                "{}/portal/history",
                config.public_base_url.trim_end_matches('/')
            ),
        }))
    }

    /// Emails `address` about the receipt `body`, unless its kind is not one
    /// of `kinds` (then nothing is sent, and the delivery is done). The
    /// Message-ID is derived from the delivery's idempotency key, so a
    /// re-sent copy can be recognised.
    pub(super) async fn send(
        &self,
        address: &[u8],
        kinds: &str,
        id: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let receipt: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| "the receipt is unreadable".to_owned())?;
        let kind = receipt["entry"]["action"]
            .as_str()
            .and_then(|a| LogAction::ALL.into_iter().find(|x| x.as_str() == a))
            .map(NoticeKind::of);
        if !kind.is_some_and(|k| NoticeKind::parse_list(kinds).contains(&k)) {
            return Ok(());
        }
        let to: Mailbox = std::str::from_utf8(address)
            .map_err(|_| "the address does not open".to_owned())?
            .parse()
            .map_err(|_| "the address is not one".to_owned())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let (subject, text) = crate::notify::email_text(&self.portal_url);
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!(
                "<{}@genomegate>",
                hex::encode(&digest.as_ref()[..16])
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| format!("email: {e}"))?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| format!("smtp: {e}"))
    }
}
