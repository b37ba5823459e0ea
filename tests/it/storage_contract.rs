//! The storage contract against the embedded adapter, through the public
//! port (the MongoDB adapter runs the same suite in `mongo.rs`).

use wasync::storage::contract;
use wasync::storage::embedded::EmbeddedStore;

#[tokio::test]
async fn embedded_store_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("contract.redb")).unwrap();
    contract::run_all(&store).await;
    contract::webhooks::run_all(&store).await;
    contract::webhooks::a_purge_deletes_the_sessions_deliveries(&store).await;
}
