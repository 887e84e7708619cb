//! The conformance suite against the embedded (redb) store.

mod conformance;

use conformance::Backend;
use std::time::Duration;
use store::embedded::{EmbeddedConfig, EmbeddedStore};

async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path());
    config.progress_interval = Duration::from_millis(200);
    let store = EmbeddedStore::open(config).unwrap();
    Backend {
        store: conformance::dyn_store(store),
        guard: Box::new(dir),
    }
}

conformance_tests!(embedded);
