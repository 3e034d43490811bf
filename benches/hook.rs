//! Request handling end to end without the network: request body bytes in,
//! response body bytes out, for prefetches of about 10, 100, 1,000 and 10,000
//! resources; with and without the card history; and, for the same bodies,
//! `serde_json::from_slice::<serde_json::Value>` as the floor (the cost of
//! reading the request's JSON at all).
//!
//! Run: `cargo bench --bench hook`. Report the ratio ours / floor per size.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use cramp_cds::auth::FhirAccess;
use cramp_cds::config::Settings;
use cramp_cds::store::history::History;
use cramp_cds::store::{Store, StoreSettings};
use cramp_cds::synthetic::patient_view_request;

/// The allocator the `cramp-cds` binary uses, so the numbers are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

fn hook_requests(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    let settings = Settings::default();
    let plain = cramp_cds::invoke::CdsService::from_settings(&settings).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let store_settings = StoreSettings {
        database_url: format!("sqlite://{}/bench.db", directory.path().display()),
        ..StoreSettings::default()
    };
    let with_history = runtime.block_on(async {
        let store = Store::connect(&store_settings).await.unwrap();
        let history = History::start(store, &store_settings, Default::default(), now)
            .await
            .unwrap();
        cramp_cds::invoke::CdsService::from_settings(&settings)
            .unwrap()
            .with_history(history, true)
    });
    let access = FhirAccess::none();
    let client = cramp_cds::store::ClientScope::local();

    let mut group = c.benchmark_group("patient_view");
    for size in SIZES {
        let body = patient_view_request(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        if size >= 10_000 {
            group.sample_size(20);
        } else {
            group.sample_size(50);
        }
        group.bench_with_input(
            BenchmarkId::new("floor_serde_json_value", size),
            &body,
            |b, body| {
                b.iter(|| {
                    black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap())
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("end_to_end", size), &body, |b, body| {
            b.iter(|| {
                let invocation = runtime
                    .block_on(plain.invoke(
                        "cramp-numbness-patient-view",
                        black_box(body),
                        now,
                        &access,
                        &client,
                    ))
                    .unwrap();
                black_box(serde_json::to_vec(&invocation.response).unwrap())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("end_to_end_with_history", size),
            &body,
            |b, body| {
                b.iter(|| {
                    let invocation = runtime
                        .block_on(with_history.invoke(
                            "cramp-numbness-patient-view",
                            black_box(body),
                            now,
                            &access,
                            &client,
                        ))
                        .unwrap();
                    black_box(serde_json::to_vec(&invocation.response).unwrap())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, hook_requests);
criterion_main!(benches);
