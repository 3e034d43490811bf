//! The command line: `serve` runs the HTTP service, `evaluate` runs one
//! CDS Hooks request through the same engine offline, `check` validates the
//! knowledge, `simulate` runs a whole population through the engine and `synthesize`
//! writes a synthetic one.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::auth::FhirAccess;
use crate::config::Settings;
use crate::hooks::Hook;
use crate::invoke::{CdsService, Invocation, InvokeError};
use crate::knowledge::{Knowledge, KnowledgeSource};
use crate::server::{Application, Clock};
use crate::store::report::parse_since;

/// cramp-cds: CDS Hooks 2.0 decision support for muscle cramps and numbness.
#[derive(Debug, Parser)]
#[command(name = "cramp-cds", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve {
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides the configuration), e.g. 127.0.0.1:8080.
        #[arg(long)]
        bind: Option<String>,
        /// Accept requests without a CDS Hooks JWT. For local trials only: logged as a warning at start and on every request.
        #[arg(long)]
        allow_unauthenticated: bool,
    },
    /// Run one CDS Hooks request (a JSON file) through the engine and print the response.
    Evaluate {
        /// The request: hook, hookInstance, context and prefetch, as JSON.
        #[arg(long)]
        request: PathBuf,
        /// Evaluation time (RFC 3339); now when unset.
        #[arg(long)]
        now: Option<String>,
        /// The service id; chosen from the request's hook when unset.
        #[arg(long)]
        service: Option<String>,
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
        format: OutputFormat,
        /// Also say which cards were suppressed by clinicians' overrides (reads store.database_url)
        /// and which rules yielded to others, failed, or met unusable data.
        #[arg(long)]
        explain: bool,
        /// With `--explain`: the JWT issuer of the EHR whose clinicians' overrides count
        /// (suppression is kept per client); unauthenticated calls' overrides when unset.
        #[arg(long, requires = "explain")]
        issuer: Option<String>,
        /// With `--issuer`: the tenant its tokens name.
        #[arg(long, requires = "issuer")]
        tenant: Option<String>,
    },
    /// Print the rule catalog as Markdown (the content of docs/rules.md).
    Docs {
        /// A directory laid out like cds-hooks/ (the configured or built-in knowledge when unset).
        #[arg(long)]
        knowledge: Option<PathBuf>,
    },
    /// Print the override-rate report from the database.
    Report {
        /// Only cards and feedback from this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// One row per rule, or per knowledge version and rule (the version that issued
        /// the cards, with the feedback on them).
        #[arg(long, value_enum, default_value_t = ReportBy::Rule)]
        by: ReportBy,
        /// A TOML configuration file (for store.database_url).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a population (a FHIR Bulk Data export, patient Bundles or CDS Hooks requests) through
    /// the engine and report how often each rule fires.
    Simulate {
        /// The input directory: `*.ndjson`/`*.ndjson.gz` (Bulk Data), or `*.json` Bundles or requests.
        input: PathBuf,
        /// Evaluation time (RFC 3339); now when unset.
        #[arg(long)]
        now: Option<String>,
        /// A directory laid out like cds-hooks/ (the configured or built-in knowledge when unset).
        #[arg(long)]
        knowledge: Option<PathBuf>,
        /// A second knowledge directory: report per rule who gains and who loses the card.
        #[arg(long)]
        compare: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Also write the report as one self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Also write patient id, rule id and indicator of every card (for chart review).
        #[arg(long)]
        patients_csv: Option<PathBuf>,
        /// Also write each patient's patient-view request as DIR/<patient id>.json (to replay
        /// against a running service, or to evaluate one at a time).
        #[arg(long, value_name = "DIR")]
        write_requests: Option<PathBuf>,
        /// Suppress cards as `serve` would: the overrides in the configured card history that
        /// snooze a rule at `--now` (read once; nothing is written).
        #[arg(long)]
        suppression: bool,
        /// With `--suppression`: the JWT issuer of the EHR whose clinicians' overrides count;
        /// unauthenticated calls' overrides when unset.
        #[arg(long, requires = "suppression")]
        issuer: Option<String>,
        /// With `--issuer`: the tenant its tokens name.
        #[arg(long, requires = "issuer")]
        tenant: Option<String>,
        /// Worker threads (all cores when unset).
        #[arg(long)]
        jobs: Option<usize>,
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a synthetic population as a FHIR Bulk Data export (deterministic from the seed).
    Synthesize {
        /// How many patients.
        #[arg(long)]
        patients: u64,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The last day of the records (YYYY-MM-DD); laboratory results fall in the two years before.
        #[arg(long, default_value = "2026-11-30")]
        as_of: String,
        /// Write gzipped NDJSON (`*.ndjson.gz`).
        #[arg(long)]
        gzip: bool,
    },
    /// Load and validate the knowledge; exit non-zero naming the file and the problem.
    Check {
        /// A directory laid out like cds-hooks/ (the configured or built-in knowledge when unset).
        #[arg(long)]
        knowledge: Option<PathBuf>,
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// How `report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A table.
    Text,
    /// JSON.
    Json,
    /// CSV.
    Csv,
}

/// How `report` groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportBy {
    /// One row per rule.
    Rule,
    /// One row per knowledge version and rule.
    KnowledgeVersion,
}

impl From<ReportBy> for crate::store::report::ReportGrouping {
    fn from(by: ReportBy) -> Self {
        match by {
            ReportBy::Rule => crate::store::report::ReportGrouping::Rule,
            ReportBy::KnowledgeVersion => crate::store::report::ReportGrouping::KnowledgeVersion,
        }
    }
}

/// How `evaluate` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The CDS Hooks response JSON.
    Json,
    /// A readable summary: rule, indicator, summary, evidence.
    Text,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            bind,
            allow_unauthenticated,
        } => {
            let mut settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
            if let Some(bind) = bind {
                settings.server.bind = bind;
            }
            crate::telemetry::init(&settings.log);
            serve(settings, allow_unauthenticated)
        }
        Command::Evaluate {
            request,
            now,
            service,
            config,
            format,
            explain,
            issuer,
            tenant,
        } => {
            let settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
            let now = match now {
                Some(text) => DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| format!("--now '{text}' is not an RFC 3339 date-time: {e}"))?
                    .with_timezone(&Utc),
                None => Utc::now(),
            };
            let body = std::fs::read(&request)
                .map_err(|e| format!("cannot read {}: {e}", request.display()))?;
            let cds = CdsService::from_settings(&settings).map_err(|e| e.to_string())?;
            let service_id = match service {
                Some(id) => id,
                None => service_for_request(&cds.knowledge, &body)?,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            let invocation = runtime.block_on(async {
                let cds = if explain {
                    let store = crate::store::Store::connect(&settings.store)
                        .await
                        .map_err(|e| e.to_string())?;
                    let history = crate::store::history::History::start(
                        store,
                        &settings.store,
                        settings.suppression.clone(),
                        now,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    cds.with_history(history, false)
                } else {
                    cds
                };
                cds.invoke(
                    &service_id,
                    &body,
                    now,
                    &FhirAccess::any(),
                    &client_scope(issuer.as_deref(), tenant.as_deref()),
                )
                .await
                .map_err(|e| describe_invoke_error(&e))
            })?;
            print_invocation(&invocation, format);
            if explain {
                print_explanation(&invocation, format);
            }
            Ok(())
        }
        Command::Report {
            since,
            format,
            by,
            config,
        } => {
            let settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
            let since = since
                .as_deref()
                .map(parse_since)
                .transpose()
                .map_err(|e| e.to_string())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            let report = runtime.block_on(async {
                let store = crate::store::Store::connect(&settings.store)
                    .await
                    .map_err(|e| e.to_string())?;
                store
                    .report_by(since, by.into())
                    .await
                    .map_err(|e| e.to_string())
            })?;
            print_report(format, || report.to_text(), || report.to_csv(), &report);
            Ok(())
        }
        Command::Docs { knowledge } => {
            let source = knowledge
                .map(KnowledgeSource::Directory)
                .unwrap_or(KnowledgeSource::BuiltIn);
            let loaded = Knowledge::load(&source).map_err(|e| format!("knowledge error in {e}"))?;
            print!("{}", crate::docs::catalog_markdown(&loaded));
            Ok(())
        }
        Command::Simulate {
            input,
            now,
            knowledge,
            compare,
            format,
            html,
            patients_csv,
            write_requests,
            suppression,
            issuer,
            tenant,
            jobs,
            config,
        } => {
            let mut settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
            if knowledge.is_some() {
                settings.knowledge.dir = knowledge;
            }
            let now = parse_now(now)?;
            let history = suppression
                .then(|| history_snapshot(&settings, now))
                .transpose()?;
            let with_history = |service: CdsService| match &history {
                Some(history) => service.with_history(history.clone(), false),
                None => service,
            };
            let base =
                with_history(CdsService::from_settings(&settings).map_err(|e| e.to_string())?);
            let compared = compare
                .map(|dir| {
                    settings.knowledge.dir = Some(dir);
                    CdsService::from_settings(&settings)
                        .map(with_history)
                        .map_err(|e| e.to_string())
                })
                .transpose()?;
            let options = crate::simulate::SimulateOptions {
                input,
                now,
                base,
                compared,
                jobs: jobs
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                patients_csv,
                write_requests,
                scope: client_scope(issuer.as_deref(), tenant.as_deref()),
            };
            let report = crate::simulate::simulate(&options)?;
            if let Some(path) = html {
                std::fs::write(&path, crate::simulate::html::to_html(&report))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            print_report(format, || report.to_text(), || report.to_csv(), &report);
            Ok(())
        }
        Command::Synthesize {
            patients,
            out,
            seed,
            as_of,
            gzip,
        } => {
            let as_of = chrono::NaiveDate::parse_from_str(&as_of, "%Y-%m-%d")
                .map_err(|e| format!("--as-of '{as_of}' is not a YYYY-MM-DD date: {e}"))?;
            let spec = crate::simulate::population::PopulationSpec {
                patients,
                seed,
                as_of,
                gzip,
            };
            let written = crate::simulate::population::write_population(&spec, &out)?;
            eprintln!(
                "{} patients, {} resources written to {}",
                written.patients,
                written.resources,
                out.display()
            );
            Ok(())
        }
        Command::Check { knowledge, config } => {
            let settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
            let source = match knowledge {
                Some(dir) => KnowledgeSource::Directory(dir),
                None => settings.knowledge.source(),
            };
            let loaded = Knowledge::load(&source).map_err(|e| format!("knowledge error in {e}"))?;
            println!(
                "{} (knowledge version {}): {} services, {} rules, {} value sets, {} analytes: OK",
                source.describe(),
                loaded.version.id(),
                loaded.services.len(),
                loaded.rules.len(),
                loaded.valuesets.len(),
                loaded.analytes.len()
            );
            Ok(())
        }
    }
}

/// The client whose overrides count on the command line: `--issuer` (with `--tenant`), or
/// unauthenticated calls when no issuer is named.
fn client_scope(issuer: Option<&str>, tenant: Option<&str>) -> crate::store::ClientScope {
    match issuer {
        Some(issuer) => crate::store::ClientScope::of(issuer, tenant),
        None => crate::store::ClientScope::local(),
    }
}

/// The card history's overrides at `now`, read once from the configured store for
/// `simulate --suppression` (see [`crate::store::history::History::snapshot`]).
fn history_snapshot(
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<crate::store::history::History, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let store = crate::store::Store::connect(&settings.store)
            .await
            .map_err(|e| format!("--suppression: cannot open the card history: {e}"))?;
        crate::store::history::History::snapshot(store, settings.suppression.clone(), now)
            .await
            .map_err(|e| format!("--suppression: cannot read the overrides: {e}"))
    })
}

/// The `--now` of `simulate`: an RFC 3339 date-time, or now.
fn parse_now(now: Option<String>) -> Result<DateTime<Utc>, String> {
    match now {
        Some(text) => Ok(DateTime::parse_from_rfc3339(&text)
            .map_err(|e| format!("--now '{text}' is not an RFC 3339 date-time: {e}"))?
            .with_timezone(&Utc)),
        None => Ok(Utc::now()),
    }
}

fn serve(settings: Settings, allow_unauthenticated: bool) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(&settings, allow_unauthenticated, Clock::System)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            bind = %settings.server.bind,
            port = app.port(),
            "cramp-cds listening; discovery at /cds-services"
        );
        app.run_until_stopped()
            .await
            .map_err(|e| format!("server failed: {e}"))
    })
}

fn service_for_request(knowledge: &Knowledge, body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct HookOnly {
        hook: Option<String>,
    }
    let hook: Hook = serde_json::from_slice::<HookOnly>(body)
        .map_err(|e| format!("the request is not a JSON object: {e}"))?
        .hook
        .ok_or("the request has no hook; pass --service")?
        .parse()?;
    knowledge
        .services
        .iter()
        .find(|s| s.hook == hook)
        .map(|s| s.definition.id.clone())
        .ok_or_else(|| format!("no service answers {hook}"))
}

fn describe_invoke_error(error: &InvokeError) -> String {
    match error {
        InvokeError::UnknownService(_) => error.to_string(),
        InvokeError::BadRequest(e) => format!("bad request (HTTP 400): {e}"),
        InvokeError::MissingData { .. } => format!("HTTP 412: {error}"),
    }
}

fn print_invocation(invocation: &Invocation, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&invocation.response).unwrap_or_default()
        ),
        OutputFormat::Text => {
            if invocation.response.cards.is_empty() {
                println!("No cards.");
            }
            for (card, finding) in invocation.response.cards.iter().zip(&invocation.findings) {
                println!(
                    "[{}] {}: {}",
                    card.indicator.as_str(),
                    finding.rule_id,
                    card.summary
                );
                // The card's lines without the Markdown emphasis a terminal would show as stars.
                for line in crate::cards::evidence::all_lines(&finding.evidence) {
                    println!("    - {}", line.replace("**", ""));
                }
                for line in crate::cards::evidence::all_unusable_lines(&finding.evidence) {
                    println!("    - not used: {}", line.replace("**", ""));
                }
                for line in crate::cards::evidence::all_technical_lines(&finding.evidence) {
                    println!("    technical: {line}");
                }
                for suggestion in &card.suggestions {
                    println!("    suggestion: {}", suggestion.label);
                }
            }
        }
    }
}

/// What `--explain` adds: suppressed cards, yielded rules, failed rules, rules quiet and
/// suggestions withheld for a safety reason, and unusable data.
fn print_explanation(invocation: &Invocation, format: OutputFormat) {
    let mut lines = Vec::new();
    for snooze in &invocation.suppressed {
        lines.push(format!(
            "suppressed: {} (overridden as '{}'; snoozed until {})",
            snooze.rule_id,
            snooze.reason_code,
            snooze.until.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    for (rule, winner) in &invocation.yielded {
        lines.push(format!("yielded: {rule} (to {winner}, which fired)"));
    }
    for failure in &invocation.failures {
        lines.push(format!("failed: {} ({})", failure.rule_id, failure.message));
    }
    for quiet in &invocation.quieted {
        let mut found = crate::cards::evidence::all_lines(&quiet.evidence);
        found.extend(crate::cards::evidence::all_unusable_lines(&quiet.evidence));
        let found = if found.is_empty() {
            String::new()
        } else {
            format!(" ({})", found.join("; ").replace("**", ""))
        };
        lines.push(format!(
            "quiet for safety: {} (reason {}: {}{found})",
            quiet.rule_id,
            quiet.reason.as_str(),
            quiet.explanation
        ));
    }
    for (rule, withheld) in &invocation.withheld {
        lines.push(format!(
            "suggestion withheld: {rule}: {} (reason {}: {})",
            withheld.label,
            withheld.reason.as_str(),
            withheld.explanation
        ));
    }
    for issue in &invocation.data_issues {
        lines.push(format!("data not used: {issue}"));
    }
    if lines.is_empty() {
        lines.push("nothing was suppressed, yielded or skipped".to_owned());
    }
    for line in lines {
        match format {
            OutputFormat::Text => println!("{line}"),
            OutputFormat::Json => eprintln!("{line}"),
        }
    }
}

/// Prints a report (the card history's or a simulation's) in `format`.
fn print_report(
    format: ReportFormat,
    text: impl FnOnce() -> String,
    csv: impl FnOnce() -> String,
    report: &impl serde::Serialize,
) {
    match format {
        ReportFormat::Text => print!("{}", text()),
        ReportFormat::Csv => print!("{}", csv()),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
    }
}
