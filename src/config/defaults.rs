//! What each setting is when the file and the environment leave it out.

use super::*;

pub(super) fn yes() -> bool {
    true
}
pub(super) fn default_public_base_url() -> String {
    "https://localhost:8443".into()
}
pub(super) fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
pub(super) fn default_body_limit() -> usize {
    256 * 1024
}
pub(super) fn default_cert() -> PathBuf {
    "certs/server.pem".into()
}
pub(super) fn default_key() -> PathBuf {
    "certs/server.key".into()
}
pub(super) fn default_database_url() -> SecretString {
    SecretString::from("sqlite://data/genomegate.db")
}
pub(super) fn default_pool_size() -> u32 {
    16
}
pub(super) fn default_release_page() -> u32 {
    5_000
}
pub(super) fn default_audience() -> String {
    "genomegate".into()
}
pub(super) fn default_leeway() -> u64 {
    30
}
pub(super) fn default_key_file() -> PathBuf {
    "data/keys/genomegate-keys.toml".into()
}
pub(super) fn default_dev_dir() -> PathBuf {
    "certs".into()
}
pub(super) fn default_policies_dir() -> PathBuf {
    "policies".into()
}
pub(super) fn default_log_format() -> String {
    "json".into()
}
pub(super) fn default_log_level() -> String {
    "info".into()
}
pub(super) fn default_log_origin() -> String {
    "genomegate.local/access-log".into()
}
pub(super) fn default_integrate_batch() -> usize {
    100_000
}
pub(super) fn default_integrate_interval_ms() -> u64 {
    5
}
pub(super) fn default_integrate_busy_interval_ms() -> u64 {
    25
}
pub(super) fn default_max_attempts() -> i32 {
    8
}
pub(super) fn default_backoff_ms() -> u64 {
    1_000
}
pub(super) fn default_backoff_max_ms() -> u64 {
    3_600_000
}
pub(super) fn default_lease_ms() -> u64 {
    30_000
}
pub(super) fn default_webhook_timeout_ms() -> u64 {
    10_000
}
pub(super) fn default_webhook_ports() -> Vec<u16> {
    vec![443]
}
pub(super) fn default_nats_subject() -> String {
    "genomegate.notifications".into()
}
pub(super) fn default_stream_replay_page() -> i64 {
    500
}
pub(super) fn default_nats_stream() -> String {
    "GENOMEGATE_NOTIFICATIONS".into()
}
pub(super) fn default_came_of_age_check_ms() -> u64 {
    3_600_000
}
pub(super) fn default_screening_period() -> u64 {
    86_400
}
pub(super) fn default_volume_factor() -> f64 {
    10.0
}
pub(super) fn default_volume_floor() -> u64 {
    200
}
pub(super) fn default_enrollment_ttl_hours() -> i64 {
    24 * 30
}
pub(super) fn default_patient_token_ttl() -> i64 {
    900
}
pub(super) fn default_email_from() -> String {
    "GenomeGate <no-reply@genomegate.invalid>".into()
}
pub(super) fn default_session_idle_minutes() -> i64 {
    30
}
pub(super) fn default_session_hours() -> i64 {
    12
}
pub(super) fn default_attempts_per_minute() -> u32 {
    10
}
pub(super) fn default_member_requests_per_minute() -> u32 {
    6
}

macro_rules! default_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // An empty table always deserializes: every field has a default.
                toml::from_str("").unwrap_or_else(|_| unreachable_default())
            }
        }
    )*};
}

#[allow(clippy::panic)]
fn unreachable_default<T>() -> T {
    panic!("configuration defaults failed to deserialize; this is a bug")
}

default_from_serde!(
    AuthConfig,
    ServerConfig,
    TlsConfig,
    DatabaseConfig,
    KeysConfig,
    PoliciesConfig,
    LoggingConfig,
    AccessLogConfig,
    NotifyConfig,
    PatientsConfig,
    ScreeningConfig,
    RecallConfig,
    DataAccessConfig
);

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable_default())
    }
}
