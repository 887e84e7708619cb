//! The cluster's Services, for the containers' service variables: one
//! kube-runtime `reflector` over all namespaces, started with the kubelet,
//! as the kubelet's service informer. While the apiserver is out of reach,
//! the store keeps the last state it listed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::Instrument;

/// How long a container start waits for the first list of Services (as
/// long as it waited for a list before): pods do not wait long on an
/// apiserver that does not answer.
const FIRST_LIST: Duration = Duration::from_secs(5);

/// The watched Services; the watch stops when this is dropped.
pub struct Services {
    store: Store<Service>,
    task: tokio::task::AbortHandle,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("known", &self.store.state().len())
            .finish_non_exhaustive()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Services {
    /// Starts the watch (in the current tokio runtime).
    pub fn spawn(client: kube::Client) -> Self {
        let (store, writer) = reflector::store();
        let api: Api<Service> = Api::all(client);
        let stream = reflector::reflector(
            writer,
            watcher::watcher(api, watcher::Config::default()).default_backoff(),
        );
        let task = tokio::spawn(
            async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    if let Err(e) = event {
                        tracing::debug!(error = %e, "service watch failed; retrying");
                    }
                }
            }
            .instrument(tracing::info_span!("services")),
        );
        Services {
            store,
            task: task.abort_handle(),
        }
    }

    /// The services whose variables a container of a pod in `namespace`
    /// gets: the namespace's (with `links`, `enableServiceLinks`) and
    /// `default/kubernetes`. Waits up to [`FIRST_LIST`] for the first list;
    /// without it, none.
    pub async fn for_pod(&self, namespace: &str, links: bool) -> Vec<Service> {
        if tokio::time::timeout(FIRST_LIST, self.store.wait_until_ready())
            .await
            .is_err()
        {
            tracing::info!("the services are not listed yet: no service variables");
        }
        select(&self.store.state(), namespace, links)
    }
}

/// The services of `all` a container of a pod in `namespace` sees.
fn select(all: &[Arc<Service>], namespace: &str, links: bool) -> Vec<Service> {
    all.iter()
        .filter(|s| {
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            let name = s.metadata.name.as_deref().unwrap_or_default();
            (links && ns == namespace) || (ns == "default" && name == "kubernetes")
        })
        .map(|s| Service::clone(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn names(v: &[Service]) -> Vec<String> {
        let mut out: Vec<String> = v
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_pod_sees_its_namespace_and_the_kubernetes_service() {
        let all = [
            svc("default", "kubernetes"),
            svc("default", "web"),
            svc("shop", "cart"),
            svc("shop", "db"),
            svc("other", "x"),
        ];
        let cases: [(&str, bool, &[&str]); 4] = [
            (
                "shop",
                true,
                &["default/kubernetes", "shop/cart", "shop/db"],
            ),
            ("shop", false, &["default/kubernetes"]),
            ("default", true, &["default/kubernetes", "default/web"]),
            ("default", false, &["default/kubernetes"]),
        ];
        for (ns, links, want) in cases {
            assert_eq!(names(&select(&all, ns, links)), want, "{ns} links={links}");
        }
    }
}
