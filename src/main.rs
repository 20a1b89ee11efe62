//! The `genomegate` command.

use clap::{Parser, Subcommand};
use genomegate::clock::SystemClock;
use genomegate::config::{Config, Mode};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "genomegate",
    version,
    about = "Consent and genomic-data governance service"
)]
struct Cli {
    /// TOML configuration file. Environment variables GENOMEGATE__SECTION__KEY override it.
    #[arg(long, short, env = "GENOMEGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP(S) service (applies pending migrations first).
    Serve {
        /// Development only: seed a demo patient and print a link that
        /// enrolls them in the patient portal.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Development only: sign a bearer token with the local development key.
    Token {
        /// Role(s): consent_admin, hospital_staff, auditor.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Organization, e.g. hospital-a.
        #[arg(long)]
        org: String,
        /// Subject (user ID).
        #[arg(long, default_value = "dev-user")]
        sub: String,
        /// Lifetime in minutes.
        #[arg(long, default_value_t = 60)]
        ttl_minutes: i64,
        /// For `--role patient`: the patient_ref the token is bound to.
        #[arg(long)]
        patient_ref: Option<String>,
    },
    /// Check the access log: recompute the Merkle tree from every entry,
    /// compare every stored node and checkpoint, and report the first bad
    /// index. Exits 1 when anything disagrees.
    VerifyLog {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create, rotate or list the versioned keys (patient, sample, project,
    /// vault, checkpoint, token, handle, visa).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Development only: create a CA, a localhost server certificate and a
    /// hospital client certificate with openssl, in the development directory.
    Certs {
        /// Organization the client certificate speaks for.
        #[arg(long, default_value = "hospital-a")]
        hospital: String,
        /// Only issue another client certificate from the existing CA.
        #[arg(long)]
        client_only: bool,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create the key file with version 1 of every domain (refuses to overwrite).
    Init,
    /// Add the next version of one domain's key. New identifiers use it;
    /// identifiers issued under older versions still resolve.
    Rotate {
        /// patient, sample, project, vault, checkpoint or token
        #[arg(long)]
        domain: String,
    },
    /// List domains, versions and fingerprints (never the keys).
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("genomegate: {e}");
            return ExitCode::from(2);
        }
    };
    genomegate::telemetry::init(&config.logging.format, &config.logging.level);
    match run(cli.command, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("genomegate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, config: Config) -> Result<(), String> {
    match command {
        Command::Serve { demo } => serve(config, demo),
        Command::VerifyLog { json } => verify_log(&config, json),
        Command::Migrate => {
            use secrecy::ExposeSecret;
            let pool = genomegate::db::connect(config.database.url.expose_secret(), 1)
                .map_err(|e| e.to_string())?;
            let mut conn = pool
                .get()
                .map_err(|e| format!("cannot connect to the database: {e}"))?;
            let applied = genomegate::db::run_migrations(&mut conn).map_err(|e| e.to_string())?;
            println!("applied {} migration(s)", applied.len());
            for version in applied {
                println!("  {version}");
            }
            Ok(())
        }
        Command::Token {
            roles,
            org,
            sub,
            ttl_minutes,
            patient_ref,
        } => {
            if config.mode == Mode::Production {
                return Err(
                    "`token` signs with the development key and is refused in production mode"
                        .into(),
                );
            }
            if !(1..=24 * 60).contains(&ttl_minutes) {
                return Err("--ttl-minutes must be between 1 and 1440".into());
            }
            // Patient tokens come only from the service's own token key, the
            // one enrollment uses; every other role from the development key.
            let signer = if patient_ref.is_some() {
                if roles != ["patient"] {
                    return Err("--patient-ref goes with --role patient alone".into());
                }
                let keys = genomegate::pseudonym::keyring::Keyring::load(&config.keys.file)?;
                genomegate::server::patient_token_signer(
                    keys.current(genomegate::pseudonym::keyring::KeyDomain::Token),
                    config.public_base_url.trim_end_matches('/'),
                )?
            } else {
                genomegate::auth::dev::load_or_create(&config.keys.dev_dir)?
            };
            let now = genomegate::clock::Clock::now(&SystemClock);
            let claims = genomegate::auth::dev::TokenClaims {
                iss: &signer.issuer,
                aud: &config.auth.audience,
                sub: &sub,
                org: &org,
                roles: &roles,
                iat: now.timestamp(),
                exp: (now + chrono::Duration::minutes(ttl_minutes)).timestamp(),
                patient_ref: patient_ref.as_deref(),
            };
            println!("{}", signer.sign_claims(&claims)?);
            Ok(())
        }
        Command::Keys { action } => {
            use genomegate::pseudonym::keyring::{KeyDomain, Keyring};
            let path = &config.keys.file;
            let now = genomegate::clock::Clock::now(&SystemClock);
            match action {
                KeysAction::Init => {
                    Keyring::create_file(path, config.mode == Mode::Development, now)?;
                    println!("created {} (mode 0600)", path.display());
                }
                KeysAction::Rotate { domain } => {
                    let domain = KeyDomain::parse(&domain).ok_or(
                        "--domain must be patient, sample, project, vault, checkpoint, token, handle or visa",
                    )?;
                    let version = Keyring::rotate_file(path, domain, now)?;
                    println!(
                        "{} key is now version {version}; older versions still resolve",
                        domain.as_str()
                    );
                }
                KeysAction::List => {
                    let keyring = Keyring::load(path)?;
                    for domain in KeyDomain::ALL {
                        for key in keyring.newest_first(domain) {
                            println!(
                                "{:<8} v{:<3} created {}  fingerprint {}",
                                domain.as_str(),
                                key.version,
                                key.created_at.to_rfc3339(),
                                key.fingerprint()
                            );
                        }
                    }
                    if keyring.is_development {
                        println!("(development keys: production mode refuses this file)");
                    }
                }
            }
            Ok(())
        }
        Command::Certs {
            hospital,
            client_only,
        } => {
            if config.mode == Mode::Production {
                return Err(
                    "`certs` makes development certificates and is refused in production mode"
                        .into(),
                );
            }
            let dir = &config.keys.dev_dir;
            let client = if client_only {
                genomegate::certs::issue_client(dir, &hospital)?
            } else {
                genomegate::certs::generate_dev_set(dir, &hospital)?
            };
            println!("development certificates in {}", dir.display());
            println!(
                "  client certificate for {hospital}: {} (key {})",
                client.cert.display(),
                client.key.display()
            );
            Ok(())
        }
    }
}

fn verify_log(config: &Config, json: bool) -> Result<(), String> {
    use secrecy::ExposeSecret;
    let keys = genomegate::pseudonym::keyring::Keyring::load(&config.keys.file)?;
    let (_, verifier_keys) = genomegate::workers::checkpoint_keys(&keys, &config.log.origin)?;
    let started = std::time::Instant::now();
    let report = genomegate::db::ledger::verify(
        config.database.url.expose_secret(),
        &config.log.origin,
        &verifier_keys,
    )
    .map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{} entries, {} checkpoints checked in {:.2?} (at most {} rows read ahead of their turn)",
            report.size,
            report.checkpoints_checked,
            started.elapsed(),
            report.peak_rows_held
        );
        match report.first_bad_index {
            None => println!("the log is intact"),
            Some(index) => {
                println!("FIRST BAD INDEX: {index}");
                for f in &report.findings {
                    println!("  index {}: {}", f.index, f.problem);
                }
            }
        }
    }
    match report.first_bad_index {
        None => Ok(()),
        Some(index) => Err(format!("the log does not verify; first bad index {index}")),
    }
}

fn serve(config: Config, demo: bool) -> Result<(), String> {
    if demo && config.mode != Mode::Development {
        return Err("--demo seeds made-up patients: development mode only".into());
    }
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let state = genomegate::server::build_state(&config, Arc::new(SystemClock))?;
        if demo {
            let link = genomegate::app::demo::seed(&state.ctx)
                .map_err(|e| format!("the demo could not be seeded: {e}"))?;
            println!(
                "Demo patient ready. Open the patient portal and enroll with a passkey:\n  {link}"
            );
        }
        let bound = genomegate::server::bind(&config, state)?;
        tracing::info!(
            addr = %bound.addr,
            tls = bound.tls,
            mode = ?config.mode,
            database = config.database_backend().map(|b| b.as_str()).unwrap_or("unknown"),
            "genomegate listening"
        );
        bound.server.await.map_err(|e| e.to_string())
    })
}
