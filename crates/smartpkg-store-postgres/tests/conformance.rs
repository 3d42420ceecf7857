//! The storage contract against PostgreSQL: one test per case, each on a fresh database.

use std::sync::Arc;

use smartpkg_store::Store;
use smartpkg_store_postgres::testing::FreshDatabase;
use smartpkg_store_postgres::PgStore;

async fn fresh() -> (FreshDatabase, Arc<dyn Store>) {
    let fresh = FreshDatabase::create().await.expect("a fresh database");
    let store = PgStore::connect(&fresh.url, 4).await.expect("connect");
    (fresh, Arc::new(store))
}

smartpkg_store::conformance_tests!(fresh);
