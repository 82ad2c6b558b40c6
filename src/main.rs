//! The `gatehouse` command: serve, migrate, and operator tasks.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gatehouse::{
    AppState,
    accounts::{forms::auth::Registration, service},
    audit_log, build_router,
    core::{client::ClientContext, types::Email},
    core::{config, config::Config, db, jwt, telemetry},
    jobs,
};
use secrecy::{ExposeSecret, SecretString};

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "Authentication, MFA and device trust over PostgreSQL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and run background jobs.
    Serve,
    /// Create the database if missing and apply pending migrations.
    Migrate,
    /// Create a verified staff superuser. The password comes from GATEHOUSE_PASSWORD or a prompt.
    Createsuperuser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
    },
    /// Signing keys for access tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Queue the notification digests that are due (once; `serve` runs it every 5 minutes).
    Digest,
    /// Run the daily audit summary for one day or a range (idempotent: re-running is safe).
    Summarize {
        /// The day to summarise (YYYY-MM-DD, UTC).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        date: Option<chrono::NaiveDate>,
        #[arg(long, requires = "to")]
        from: Option<chrono::NaiveDate>,
        #[arg(long, requires = "from")]
        to: Option<chrono::NaiveDate>,
    },
    /// Monthly partitions of the audit tables.
    Partitions {
        #[command(subcommand)]
        command: PartitionsCommand,
    },
    /// Second factors, for an operator at the shell.
    Mfa {
        #[command(subcommand)]
        command: MfaCommand,
    },
    /// Delete what has expired (MFA challenges and codes), once.
    Cleanup,
}

#[derive(Subcommand)]
enum MfaCommand {
    /// Set up TOTP for an account: prints the otpauth URI; on a terminal it then asks for a
    /// code from the authenticator and confirms, otherwise run `mfa confirm`.
    Enroll {
        #[arg(long)]
        email: String,
    },
    /// Confirm a TOTP setup with a code from the authenticator; prints the backup codes.
    Confirm {
        #[arg(long)]
        email: String,
        #[arg(long)]
        code: String,
    },
    /// Approve a pending MFA change request (for a site with a single staff member).
    Approve {
        #[arg(long)]
        request: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new Ed25519 private key (PKCS#8 PEM) for JWT_SIGNING_KEY_FILE.
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum PartitionsCommand {
    /// Create missing monthly partitions from this month to N months ahead.
    Ensure {
        #[arg(long, default_value_t = jobs::PARTITION_MONTHS_AHEAD)]
        months: u32,
    },
    /// Show each partition with its bounds, row count and size.
    List,
    /// Detach and drop partitions older than the retention policy.
    Prune,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Command::Keys { command: KeysCommand::Generate { out, force } } = &cli.command {
        return generate_key(out, *force);
    }
    // The schema's commands read the database settings only: a migration job needs no keys.
    match cli.command {
        Command::Migrate => return migrate().await,
        Command::Partitions { command } => return partitions(command).await,
        _ => {}
    }
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let _logs = telemetry::init(config.log_format);
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Createsuperuser { email, username } => {
            let password: SecretString = match std::env::var("GATEHOUSE_PASSWORD") {
                Ok(p) if !p.is_empty() => p.into(),
                _ => {
                    let first =
                        rpassword::prompt_password("Password: ").map_err(|e| format!("cannot read password: {e}"))?;
                    let again = rpassword::prompt_password("Password (again): ").map_err(|e| e.to_string())?;
                    if first != again {
                        return Err("the passwords differ".into());
                    }
                    first.into()
                }
            };
            let pool = db::jobs_pool(&config.database).map_err(|e| e.to_string())?;
            let keys = jwt::JwtKeys::ephemeral().map_err(|e| e.to_string())?;
            let state = AppState::new(pool, config, keys);
            let created = match Registration::parse(&email, &username, password, None, None) {
                Ok(registration) => service::create_superuser(&state, registration).await,
                Err(e) => Err(e),
            };
            match created {
                Ok(user) => {
                    println!("superuser {} <{}> created ({})", user.username, user.email, user.id);
                    Ok(())
                }
                Err(gatehouse::AppError::Validation(fields)) => Err(fields
                    .iter()
                    .map(|(field, messages)| format!("{field}: {}", messages.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")),
                Err(e) => Err(e.parts().2),
            }
        }
        Command::Mfa { command } => {
            let pool = db::jobs_pool(&config.database).map_err(|e| e.to_string())?;
            let keys = jwt::JwtKeys::ephemeral().map_err(|e| e.to_string())?;
            let state = AppState::new(pool, config, keys);
            let message = |e: gatehouse::AppError| e.parts().2;
            match command {
                MfaCommand::Enroll { email } => {
                    let email = Email::parse(&email).map_err(|m| format!("--email {m}"))?;
                    let (_, setup) = service::operator_totp_setup(&state, &email).await.map_err(message)?;
                    println!("Add this to an authenticator app:");
                    println!("{}", setup.otpauth_uri.expose_secret());
                    if !std::io::stdin().is_terminal() {
                        println!("Then: gatehouse mfa confirm --email {} --code CODE", email.as_str());
                        return Ok(());
                    }
                    let code =
                        rpassword::prompt_password("Code from the authenticator: ").map_err(|e| e.to_string())?;
                    confirm_totp(&state, &email, code).await
                }
                MfaCommand::Confirm { email, code } => {
                    let email = Email::parse(&email).map_err(|m| format!("--email {m}"))?;
                    confirm_totp(&state, &email, code).await
                }
                MfaCommand::Approve { request } => {
                    service::approve_mfa_change(&state, &ClientContext::default(), request, None)
                        .await
                        .map_err(message)?;
                    println!("change request {request} approved and applied");
                    Ok(())
                }
            }
        }
        Command::Cleanup => {
            let pool = db::jobs_pool(&config.database).map_err(|e| e.to_string())?;
            let keys = jwt::JwtKeys::ephemeral().map_err(|e| e.to_string())?;
            let state = AppState::new(pool, config, keys);
            match jobs::run_cleanup_once(&state, audit_log::jobs::Trigger::Cli).await.map_err(|e| e.to_string())? {
                Some(rows) => println!("cleanup: {rows} expired rows deleted"),
                None => println!("cleanup: another instance is running it; skipped"),
            }
            Ok(())
        }
        Command::Digest => {
            let pool = db::jobs_pool(&config.database).map_err(|e| e.to_string())?;
            let keys = jwt::JwtKeys::ephemeral().map_err(|e| e.to_string())?;
            let state = AppState::new(pool, config, keys);
            match jobs::run_digests_once(&state).await.map_err(|e| e.to_string())? {
                Some(n) => println!("digest: {n} digest email(s) queued"),
                None => println!("digest: another instance is running it; skipped"),
            }
            Ok(())
        }
        Command::Summarize { date, from, to } => {
            let (from, to) = match (date, from, to) {
                (Some(d), _, _) => (d, d),
                (None, Some(f), Some(t)) if f <= t => (f, t),
                (None, Some(_), Some(_)) => return Err("--from must not be after --to".into()),
                _ => return Err("give --date D, or --from D1 --to D2".into()),
            };
            let pool = db::jobs_pool(&config.database).map_err(|e| e.to_string())?;
            let runs = audit_log::summary::run_range(&pool, from, to, audit_log::jobs::Trigger::Cli)
                .await
                .map_err(|e| e.to_string())?;
            for run in runs {
                let day = run.target_date.map(|d| d.to_string()).unwrap_or_default();
                println!(
                    "{day}  {:<9} {:>7} row(s)  {} ms",
                    run.status,
                    run.rows_affected,
                    run.duration_ms.unwrap_or(0)
                );
            }
            Ok(())
        }
        Command::Keys { .. } | Command::Migrate | Command::Partitions { .. } => Ok(()),
    }
}

/// `gatehouse migrate`: as the schema owner when one is configured (docs/operations.md).
async fn migrate() -> Result<(), String> {
    let (database, log_format) = config::database_command_from_env().map_err(|e| e.to_string())?;
    let _logs = telemetry::init(log_format);
    let owner = database.schema_owner();
    if let Some(name) = db::create_database_if_missing(owner.url.expose()).await.map_err(|e| e.to_string())? {
        println!("created the database {name}");
    }
    let pool = db::jobs_pool(&owner).map_err(|e| e.to_string())?;
    db::migrate(&pool).await.map_err(|e| e.to_string())?;
    println!("migrations applied");
    Ok(())
}

/// `gatehouse partitions ...`: DDL, as the schema owner.
async fn partitions(command: PartitionsCommand) -> Result<(), String> {
    let (database, log_format) = config::database_command_from_env().map_err(|e| e.to_string())?;
    let _logs = telemetry::init(log_format);
    let pool = db::jobs_pool(&database.schema_owner()).map_err(|e| e.to_string())?;
    let today = audit_log::service::today();
    match command {
        PartitionsCommand::Ensure { months } => {
            let created =
                audit_log::service::ensure_partitions(&pool, today, months).await.map_err(|e| e.to_string())?;
            println!("{} partition(s) created", created.len());
            created.iter().for_each(|p| println!("  {p}"));
        }
        PartitionsCommand::List => {
            let parts = audit_log::service::list_partitions(&pool).await.map_err(|e| e.to_string())?;
            println!("{:<48} {:>10} {:>12}  bounds", "partition", "rows", "bytes");
            for p in parts {
                println!("{:<48} {:>10} {:>12}  {}", p.name, p.rows, p.size_bytes, p.bounds);
            }
        }
        PartitionsCommand::Prune => {
            let (months, _) = config::audit_retention_from_env().map_err(|e| e.to_string())?;
            // Under the partitions job's lock: a job on an instance and this must not both
            // detach the same month.
            let prune = || async { Ok(audit_log::service::prune_partitions(&pool, today, months).await?) };
            let dropped = db::with_advisory_lock(&pool, jobs::locks::PARTITIONS, prune)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the partitions job is running on an instance now; try again when it is done")?;
            println!("{} partition(s) dropped", dropped.len());
            dropped.iter().for_each(|p| println!("  {p}"));
        }
    }
    Ok(())
}

fn generate_key(out: &PathBuf, force: bool) -> Result<(), String> {
    if out.exists() && !force {
        return Err(format!("{} exists; pass --force to replace it", out.display()));
    }
    let pem = jwt::generate_signing_key_pem().map_err(|e| e.to_string())?;
    // Created 0600 from the start (no moment where it is world-readable) beside the target,
    // then renamed over it, so a reader never sees half a key.
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(".gatehouse-key-{}.tmp", uuid::Uuid::new_v4()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        use std::io::Write;
        file.write_all(pem.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, out)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", out.display()));
    }
    println!("wrote an Ed25519 signing key (PKCS#8 v1, mode 0600) to {}", out.display());
    Ok(())
}

async fn serve(config: Config) -> Result<(), String> {
    let keys = match &config.jwt_signing_key_file {
        Some(path) => jwt::JwtKeys::load(path, &config.jwt_verify_key_files).map_err(|e| e.to_string())?,
        None => {
            tracing::warn!(
                "JWT_SIGNING_KEY_FILE is not set: using an ephemeral signing key; tokens die with this process \
                 (run `gatehouse keys generate --out FILE`)"
            );
            jwt::JwtKeys::ephemeral().map_err(|e| e.to_string())?
        }
    };
    if config.data_encryption_key.is_none() {
        tracing::warn!("DATA_ENCRYPTION_KEY is not set: using the development key; never do this in production");
    }
    let pool = db::lazy_pool(&config.database).map_err(|e| e.to_string())?;
    let pending = db::pending_migrations(&pool).await.map_err(|e| format!("cannot reach the database: {e}"))?;
    if !pending.is_empty() {
        return Err(format!(
            "{} migration(s) pending ({:?}); run `gatehouse migrate` (or `sqlx migrate run`) first",
            pending.len(),
            pending
        ));
    }
    match gatehouse::core::webauthn::RelyingParty::from_config(&config)?.off_reason() {
        Some(reason) => tracing::warn!("{reason}"),
        None => tracing::info!("passkeys on"),
    }
    let bind = config.bind_addr;
    let run_jobs = config.run_jobs;
    let mut state = AppState::new(pool, config, keys);
    state.edit().replica = gatehouse::core::replica::Replica::from_config(&state.config).map_err(|e| e.to_string())?;
    let warm_up: db::WarmUp = audit_log::repo::review::warm_up;
    state.edit().reports_db = Some(db::reports_pool(&state.config.database, warm_up).map_err(|e| e.to_string())?);
    jobs::ensure_partitions_at_start(&state).await.map_err(|e| e.to_string())?;
    // After the months are made: a new partition would discard the plans made as they open.
    tokio::spawn(db::open_reports(state.reports_primary().clone()));
    // A provider that cannot be discovered is left out (and retried on use), never fatal.
    for (provider, error) in state.oidc.discover_all().await {
        tracing::warn!(%provider, %error, "social login: provider not discovered; left out of the list for now");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mailer = gatehouse::notifications::mailer::Mailer::new(
        state.config.smtp_url.as_ref().map(|url| url.expose()),
        &state.config.email_from,
    )?;
    if state.config.smtp_url.is_none() {
        tracing::warn!("SMTP_URL is not set: emails are written to the log (console provider), not sent");
    }
    let sms = gatehouse::notifications::sms::AnySms::from_config(&state.config)?;
    let push = gatehouse::notifications::push::Push::from_config(&state.config)?;
    let mut workers = if run_jobs {
        // The same state, but on the jobs' own pool (their longer statement budget).
        let mut job_state = state.clone();
        job_state.edit().db = db::jobs_pool(&job_state.config.database).map_err(|e| e.to_string())?;
        job_state.edit().admin_db = db::admin_pool(&job_state.config.database).map_err(|e| e.to_string())?;
        jobs::spawn(job_state, mailer, sms, push, stop_rx.clone())
    } else {
        Vec::new()
    };
    if let Some(replica) = &state.replica {
        workers.push(tokio::spawn(gatehouse::core::replica::watch(replica.clone(), stop_rx.clone())));
    }
    // The session cache's listener runs on every instance, jobs or not.
    workers.push(tokio::spawn(gatehouse::core::auth_cache::run_listener(
        state.db.clone(),
        state.auth_cache.clone(),
        format!("gatehouse-listener {bind}"),
        stop_rx,
    )));

    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| format!("cannot bind {bind}: {e}"))?;
    // TCP_NODELAY: without it a response written in more than one segment waits for the
    // client's delayed ACK (up to 40 ms); seen as a 100 ms p99 on refresh at concurrency 4.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    tracing::info!(%bind, "gatehouse listening");
    axum::serve(listener, build_router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    tracing::info!("gatehouse stopped");
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutdown signal received");
}

/// Confirms an operator's TOTP enrolment and prints the backup codes, shown once.
async fn confirm_totp(state: &AppState, email: &Email, code: String) -> Result<(), String> {
    let codes = service::operator_totp_confirm(state, email, code.into()).await.map_err(|e| e.parts().2)?;
    println!("MFA is on for {}. Backup codes (shown once, keep them safe):", email.as_str());
    for code in codes.backup_codes {
        println!("  {code}");
    }
    Ok(())
}
