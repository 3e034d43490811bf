//! The database schema and the release: a replica started against a schema that a newer
//! release migrated refuses to start and says so, on SQLite and PostgreSQL alike.

use cramp_cds::store::{Store, StoreSettings};

use crate::helpers::on_each_database;

on_each_database!(a_schema_newer_than_this_release_stops_start_up_with_a_clear_message);
async fn a_schema_newer_than_this_release_stops_start_up_with_a_clear_message(url: &str) {
    let settings = StoreSettings {
        database_url: url.to_owned(),
        ..StoreSettings::default()
    };
    Store::connect(&settings).await.unwrap();
    // What a newer release leaves behind: a migration this build does not have.
    let mut connection = {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(url).await.unwrap()
    };
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         SELECT 29991231000001, 'from a newer release', success, checksum, execution_time \
         FROM _sqlx_migrations ORDER BY version LIMIT 1",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    let Err(error) = Store::connect(&settings).await else {
        panic!("a newer schema is refused");
    };
    let message = error.to_string();
    assert!(
        message.contains("the database schema is newer than this release")
            && message.contains("29991231000001"),
        "{message}"
    );
}

#[actix_web::test]
#[ignore = "needs PostgreSQL: set CRAMP_CDS_TEST_POSTGRES_URL"]
async fn postgresql_replicas_starting_at_once_apply_the_migrations_once() {
    let url = crate::helpers::postgres_database_url().await;
    let settings = StoreSettings {
        database_url: url.clone(),
        ..StoreSettings::default()
    };
    // Five replicas against one empty schema: the migrator's advisory lock lets one apply the
    // migrations while the others wait, then find nothing to do.
    let starts = (0..5).map(|_| Store::connect(&settings));
    for result in futures::future::join_all(starts).await {
        result.expect("every replica starts");
    }
    let mut connection = {
        use sqlx::Connection;
        sqlx::AnyConnection::connect(&url).await.unwrap()
    };
    let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    let migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/migrations"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
            })
            .count();
    assert_eq!(applied as usize, migrations, "every migration applied once");
}
