//! `cramp-cds simulate` end to end on a small synthetic population (200 patients, about 100
//! resources each, written once by the generator): partition pass, request building and
//! evaluation, with one worker and with two. Against it, the same 200 `patient-view` requests
//! (as `simulate --write-requests` writes them) evaluated one call at a time: with the
//! knowledge loaded and checked for every call (as each `cramp-cds evaluate` process does; the
//! process start is not counted), and with the service kept, as `serve` does. Criterion
//! reports patients per second.
//!
//! Run: `cargo bench --bench simulate`.

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use cramp_cds::config::Settings;
use cramp_cds::invoke::CdsService;
use cramp_cds::simulate::evaluator::Evaluator;
use cramp_cds::simulate::{SimulateOptions, simulate};
use cramp_cds::synthetic::{PopulationSpec, write_population};

/// The allocator the `cramp-cds` binary uses, so the numbers are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATIENTS: u64 = 200;

fn simulate_population(c: &mut Criterion) {
    let directory = tempfile::tempdir().unwrap();
    let spec = PopulationSpec {
        patients: PATIENTS,
        seed: 1,
        as_of: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        gzip: false,
    };
    write_population(&spec, directory.path()).unwrap();
    let service = CdsService::from_settings(&Settings::default()).unwrap();
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PATIENTS));
    for jobs in [1, 2] {
        let options = SimulateOptions {
            input: directory.path().to_owned(),
            now: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            base: service.clone(),
            compared: None,
            jobs,
            patients_csv: None,
            write_requests: None,
            scope: Default::default(),
        };
        group.bench_with_input(BenchmarkId::new("jobs", jobs), &options, |b, options| {
            b.iter(|| {
                let report = simulate(options).unwrap();
                assert_eq!(report.population.patients, PATIENTS);
            })
        });
    }
    group.finish();
    one_call_at_a_time(c, directory.path(), &service);
}

/// The population's requests evaluated one at a time, with and without building the service
/// (loading and checking the knowledge) for each.
fn one_call_at_a_time(c: &mut Criterion, population: &std::path::Path, service: &CdsService) {
    let requests_dir = tempfile::tempdir().unwrap();
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    simulate(&SimulateOptions {
        input: population.to_owned(),
        now,
        base: service.clone(),
        compared: None,
        jobs: 1,
        patients_csv: None,
        write_requests: Some(requests_dir.path().to_owned()),
        scope: Default::default(),
    })
    .unwrap();
    let requests: Vec<Vec<u8>> = std::fs::read_dir(requests_dir.path())
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert_eq!(requests.len() as u64, PATIENTS);
    let mut group = c.benchmark_group("one_call_at_a_time");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PATIENTS));
    group.bench_function("service_built_each_call", |b| {
        b.iter(|| {
            for body in &requests {
                let service = CdsService::from_settings(&Settings::default()).unwrap();
                let evaluator = Evaluator::new(service).unwrap();
                evaluator.evaluate_patient_view(body, now).unwrap();
            }
        })
    });
    let evaluator = Evaluator::new(service.clone()).unwrap();
    group.bench_function("service_kept", |b| {
        b.iter(|| {
            for body in &requests {
                evaluator.evaluate_patient_view(body, now).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, simulate_population);
criterion_main!(benches);
