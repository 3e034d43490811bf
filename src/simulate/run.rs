//! One simulation from input directory to report: the partition pass, then each spill file's
//! patients evaluated in parallel (under one or two knowledge directories) and counted in
//! input order, so the report and the patients CSV are the same on every run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use rayon::prelude::*;

use super::age_band::{age_band, patient_age_band};
use super::evaluator::{Evaluator, Outcome};
use super::input::{InputFiles, file_name};
use super::partition::{Partitioner, partitions_for};
use super::pass::partition_inputs;
use super::patients_csv::PatientsCsv;
use super::progress::{input_bar, patients_bar};
use super::report::{Report, RunFacts};
use super::spill::PatientGroup;
use super::tally::{RuleChange, Tally, add_changes};
use crate::invoke::CdsService;
use crate::store::ClientScope;

/// What to simulate and how.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// The input directory.
    pub input: PathBuf,
    /// The evaluation time.
    pub now: DateTime<Utc>,
    /// The service with the base knowledge.
    pub base: CdsService,
    /// With `--compare`: the service with the other knowledge.
    pub compared: Option<CdsService>,
    /// Worker threads.
    pub jobs: usize,
    /// Where to write the patients CSV, if anywhere.
    pub patients_csv: Option<PathBuf>,
    /// A directory to write each patient's `patient-view` request into, if any.
    pub write_requests: Option<PathBuf>,
    /// Whose calls these are: with a history on the services, whose overrides suppress cards.
    pub scope: ClientScope,
}

/// The two outcomes of one patient.
type Outcomes = (Result<Outcome, String>, Option<Result<Outcome, String>>);

/// Runs the simulation `options` describe.
pub fn simulate(options: &SimulateOptions) -> Result<Report, String> {
    let evaluator = |service: &CdsService| {
        Evaluator::new(service.clone()).map(|e| e.with_scope(options.scope.clone()))
    };
    let base = evaluator(&options.base)?;
    let compared = options.compared.as_ref().map(evaluator).transpose()?;
    let jobs = options.jobs.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| format!("cannot start the worker threads: {e}"))?;
    let files = InputFiles::list(&options.input)?;
    let asked_for = [Some(&base), compared.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(Evaluator::resource_types_asked_for)
        .collect();
    if let Some(dir) = &options.write_requests {
        create_requests_dir(dir, &options.input)?;
    }
    let input_bytes = files.estimated_bytes();
    let partitioner = Partitioner::new(partitions_for(input_bytes), Some(asked_for))?;
    let reading = input_bar(input_bytes, !files.any_gzipped());
    let request_files = partition_inputs(&files, &partitioner, jobs, &reading);
    reading.finish_and_clear();
    let request_files = request_files?;
    let spill = partitioner.finish()?;
    let bar = patients_bar(spill.counts.patient_resources + request_files.len() as u64);
    let mut counter = Counter::new(options, compared.is_some())?;
    let now = options.now;
    let evaluate_both = |evaluate: &dyn Fn(&Evaluator) -> Result<Outcome, String>| -> Outcomes {
        let outcomes = (evaluate(&base), compared.as_ref().map(evaluate));
        bar.inc(1);
        outcomes
    };

    let today = now.date_naive();
    let outcomes: Vec<(String, usize, Outcomes)> = pool.install(|| {
        request_files
            .par_iter()
            .map(|path| match std::fs::read(path) {
                Ok(body) => {
                    let outcomes = evaluate_both(&|e: &Evaluator| e.evaluate_request(&body, now));
                    let (patient, band) = request_patient(&body, today);
                    (patient.unwrap_or_else(|| file_name(path)), band, outcomes)
                }
                Err(e) => {
                    let message = format!("cannot read {}: {e}", path.display());
                    let outcomes = (
                        Err(message.clone()),
                        compared.as_ref().map(|_| Err(message)),
                    );
                    (file_name(path), age_band(None, today), outcomes)
                }
            })
            .collect()
    });
    for (patient, band, outcomes) in outcomes {
        counter.add(&patient, band, outcomes)?;
    }

    // As many spill files as workers are read at once, then all their patients evaluated
    // together, so no worker waits for another's file; memory is one spill file per worker.
    let indices: Vec<usize> = (0..spill.len()).collect();
    for window in indices.chunks(jobs) {
        let read: Vec<Vec<PatientGroup>> = pool.install(|| {
            window
                .par_iter()
                .map(|&index| spill.read(index))
                .collect::<Result<_, _>>()
        })?;
        let (groups, without): (Vec<_>, Vec<_>) = read
            .into_iter()
            .flatten()
            .partition(|group| group.patient.is_some());
        counter.without_patient_resource += without.len() as u64;
        drop(without);
        let outcomes: Vec<(usize, Outcomes)> = pool.install(|| {
            groups
                .par_iter()
                .map(|group| {
                    let body = base.patient_view_body(group, &spill.medications);
                    if let Some(dir) = &options.write_requests {
                        write_request(dir, &group.patient_id, &body)?;
                    }
                    let band = patient_age_band(group.patient.as_deref(), today);
                    let outcomes = evaluate_both(&|e: &Evaluator| {
                        // The other knowledge may ask for other prefetch keys.
                        if std::ptr::eq(e, &base) {
                            e.evaluate_patient_view(&body, now)
                        } else {
                            let own = e.patient_view_body(group, &spill.medications);
                            e.evaluate_patient_view(&own, now)
                        }
                    });
                    Ok((band, outcomes))
                })
                .collect::<Result<_, String>>()
        })?;
        for (group, (band, outcomes)) in groups.iter().zip(outcomes) {
            counter.add(&group.patient_id, band, outcomes)?;
        }
    }
    bar.finish_and_clear();
    let run = RunFacts {
        evaluated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        suppression: options.base.history().is_some(),
        knowledge: options.base.knowledge.version.clone(),
        compared_knowledge: options
            .compared
            .as_ref()
            .map(|c| c.knowledge.version.clone()),
    };
    counter.finish(run, &spill.counts)
}

/// Writes the request `body` of `patient` as `dir/<patient>.json` (patient ids are FHIR ids:
/// letters, digits, `-` and `.`, so the name is one file in `dir`).
/// A file already there is an error: a previous run's, or a patient whose id differs from
/// another's only in case on a file system that ignores case.
fn write_request(dir: &Path, patient: &str, body: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let path = dir.join(format!("{patient}.json"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| file.write_all(body))
        .map_err(|e| {
            format!(
                "cannot write {}: {e} (--write-requests needs an empty directory)",
                path.display()
            )
        })
}

/// Creates the `--write-requests` directory `dir`, which must not be inside `input` (the next
/// run would read the requests as input).
fn create_requests_dir(dir: &Path, input: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let inside = match (dir.canonicalize(), input.canonicalize()) {
        (Ok(dir), Ok(input)) => dir.starts_with(input),
        _ => false,
    };
    if inside {
        return Err(format!(
            "--write-requests {} is inside the input directory {}",
            dir.display(),
            input.display()
        ));
    }
    Ok(())
}

/// The `context.patientId` of a CDS Hooks request, and the age band of its prefetched
/// `patient` on `today`.
fn request_patient(body: &[u8], today: NaiveDate) -> (Option<String>, usize) {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, age_band(None, today));
    };
    (
        request["context"]["patientId"].as_str().map(str::to_owned),
        age_band(request["prefetch"]["patient"]["birthDate"].as_str(), today),
    )
}

/// The counts under way and the patients CSV being written.
struct Counter {
    tally: Tally,
    changes: Option<BTreeMap<String, RuleChange>>,
    csv: Option<PatientsCsv>,
    without_patient_resource: u64,
}

impl Counter {
    fn new(options: &SimulateOptions, comparing: bool) -> Result<Counter, String> {
        Ok(Counter {
            tally: Tally::default(),
            changes: comparing.then(BTreeMap::new),
            csv: options
                .patients_csv
                .as_deref()
                .map(|path| PatientsCsv::create(path, comparing))
                .transpose()?,
            without_patient_resource: 0,
        })
    }

    fn add(
        &mut self,
        patient: &str,
        age_band: usize,
        (base, compared): Outcomes,
    ) -> Result<(), String> {
        self.tally.add(patient, age_band, &base);
        if let (Some(changes), Ok(base), Some(Ok(compared))) = (&mut self.changes, &base, &compared)
        {
            add_changes(changes, base, compared);
        }
        if let (Some(csv), Ok(base)) = (&mut self.csv, &base) {
            let compared = compared.as_ref().and_then(|c| c.as_ref().ok());
            csv.add(patient, base, compared)?;
        }
        Ok(())
    }

    fn finish(
        self,
        run: RunFacts,
        counts: &super::partition::InputCounts,
    ) -> Result<Report, String> {
        if let Some(csv) = self.csv {
            csv.finish()?;
        }
        Ok(Report::new(
            run,
            counts,
            self.without_patient_resource,
            &self.tally,
            self.changes.as_ref(),
        ))
    }
}
