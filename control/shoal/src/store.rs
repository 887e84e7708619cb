//! Opening the cluster store the server was told to use.

use anyhow::Context;
use std::path::Path;
use store::DynStore;
use store::embedded::{EmbeddedConfig, EmbeddedStore};
use store::etcd::{EtcdConfig, EtcdStore};

/// Which store, where: etcd when endpoints are given, else embedded in `DATA_DIR/store`.
pub async fn open(
    data_dir: &Path,
    etcd_endpoints: &[String],
    etcd_prefix: &str,
) -> anyhow::Result<(DynStore, String)> {
    if etcd_endpoints.is_empty() {
        let dir = data_dir.join("store");
        let store = EmbeddedStore::open(EmbeddedConfig::new(&dir))
            .with_context(|| {
            format!(
                "cannot open the embedded store in {}; if that directory belongs to something else, choose another --data-dir",
                dir.display()
            )
        })?;
        let what = format!("embedded store in {}", dir.display());
        Ok((std::sync::Arc::new(store) as DynStore, what))
    } else {
        let mut config = EtcdConfig::new(etcd_endpoints.to_vec());
        config.prefix = etcd_prefix.as_bytes().to_vec();
        let store = EtcdStore::connect(config).await.with_context(|| {
            format!(
                "cannot use etcd at {}; check that it runs and that --etcd-endpoints is right",
                etcd_endpoints.join(",")
            )
        })?;
        let what = format!("etcd at {} under {etcd_prefix}", etcd_endpoints.join(","));
        Ok((std::sync::Arc::new(store) as DynStore, what))
    }
}

/// A store check that proves reads work: the current revision.
pub async fn revision(store: &DynStore) -> anyhow::Result<i64> {
    store
        .current_revision()
        .await
        .context("the store does not answer")
}
