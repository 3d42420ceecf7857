//! The storage contract's cases against PostgreSQL, each on a fresh database.

use std::sync::Arc;

use smartpkg_store_postgres::testing::FreshDatabase;
use smartpkg_store_postgres::PgStore;

#[tokio::test]
async fn postgres_meets_the_storage_contract() {
    for case in smartpkg_store::conformance::cases() {
        let fresh = FreshDatabase::create().await.expect("a fresh database");
        let store = PgStore::connect(&fresh.url, 4).await.expect("connect");
        eprintln!("conformance case: {}", case.name);
        (case.run)(Arc::new(store)).await;
    }
}
