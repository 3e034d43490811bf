//! `cramp-cds simulate` end to end on a small synthetic population (200 patients, about 100
//! resources each, written once by the generator): partition pass, request building and
//! evaluation, with one worker and with two. Criterion reports patients per second.
//!
//! Run: `cargo bench --bench simulate`.

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use cramp_cds::config::Settings;
use cramp_cds::invoke::CdsService;
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
        };
        group.bench_with_input(BenchmarkId::new("jobs", jobs), &options, |b, options| {
            b.iter(|| {
                let report = simulate(options).unwrap();
                assert_eq!(report.population.patients, PATIENTS);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, simulate_population);
criterion_main!(benches);
