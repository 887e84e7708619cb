//! The conformance suite against a real etcd, one fresh member per test.

mod conformance;

use conformance::Backend;
use std::time::Duration;
use store::etcd::{EtcdConfig, EtcdStore};

async fn etcd() -> Backend {
    let etcd = testbed::Etcd::start().await.unwrap();
    let mut config = EtcdConfig::new([etcd.endpoint()]);
    config.progress_interval = Duration::from_millis(200);
    let store = EtcdStore::connect(config).await.unwrap();
    Backend {
        store: conformance::dyn_store(store),
        guard: Box::new(etcd),
    }
}

conformance_tests!(etcd);
