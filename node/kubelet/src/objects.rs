//! The ConfigMaps and Secrets the node's pods use, each followed by its own
//! watch (kube-runtime `watch_object`, as the kubelet's watch-based object
//! manager) for as long as a pod uses it. A change wakes the pods that use
//! the object, so their volumes are rewritten. While the apiserver is out
//! of reach, the last known version is kept. The Services (for service
//! variables) are watched too, all of them ([`Services`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use crate::services::Services;

/// How long a first read may wait for its watch to list the object.
const FIRST_READ: Duration = Duration::from_secs(10);

/// What is known about one object.
#[derive(Clone, Debug)]
enum Known<K> {
    Unknown,
    Absent,
    Present(Arc<K>),
}

#[derive(Debug)]
struct Entry<K> {
    state: watch::Receiver<Known<K>>,
    /// The pods using it (by UID), and how to wake them.
    users: HashMap<String, Arc<Notify>>,
    task: tokio::task::AbortHandle,
}

/// Watched objects of one kind.
pub struct Watched<K> {
    client: kube::Client,
    entries: Entries<K>,
}

/// The followed objects by (namespace, name).
type Entries<K> = Arc<Mutex<HashMap<(String, String), Entry<K>>>>;

/// Why an object cannot be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read {kind} {namespace}/{name}: the apiserver did not answer within {FIRST_READ:?}"
)]
pub struct NotYetKnown {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl<K> std::fmt::Debug for Watched<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map_or(0, |e| e.len());
        f.debug_struct("Watched")
            .field("objects", &n)
            .finish_non_exhaustive()
    }
}

impl<K> Watched<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    pub fn new(client: kube::Client) -> Self {
        Watched {
            client,
            entries: Arc::default(),
        }
    }

    /// The object, for the pod `user` (woken by `wake` when it changes);
    /// `None` if it does not exist.
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
        user: &str,
        wake: &Arc<Notify>,
    ) -> Result<Option<Arc<K>>, NotYetKnown> {
        let key = (namespace.to_owned(), name.to_owned());
        let mut rx = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let entry = entries
                .entry(key.clone())
                .or_insert_with(|| self.start(&key));
            entry.users.insert(user.to_owned(), wake.clone());
            entry.state.clone()
        };
        let known = tokio::time::timeout(FIRST_READ, rx.wait_for(|k| !matches!(k, Known::Unknown)))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|k| k.clone());
        match known {
            Some(Known::Present(obj)) => Ok(Some(obj)),
            Some(Known::Absent) => Ok(None),
            _ => Err(NotYetKnown {
                kind: <K as k8s_openapi::Resource>::KIND,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
        }
    }

    /// Stops following the objects the pod `user` used but no longer does
    /// (all of them when `keep` is empty).
    pub fn release(&self, user: &str, keep: &[(String, String)]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|key, entry| {
            if !keep.contains(key) {
                entry.users.remove(user);
            }
            let keep_entry = !entry.users.is_empty();
            if !keep_entry {
                entry.task.abort();
            }
            keep_entry
        });
    }

    fn start(&self, key: &(String, String)) -> Entry<K> {
        let (tx, rx) = watch::channel(Known::Unknown);
        let api: Api<K> = Api::namespaced(self.client.clone(), &key.0);
        let name = key.1.clone();
        let entries = self.entries.clone();
        let key2 = key.clone();
        let span = tracing::info_span!("object", kind = <K as k8s_openapi::Resource>::KIND, namespace = %key.0, name = %key.1);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut stream = watcher::watch_object(api, &name).boxed();
                let mut delay = Duration::from_millis(500);
                loop {
                    match stream.next().await {
                        Some(Ok(obj)) => {
                            delay = Duration::from_millis(500);
                            let known = match obj {
                                Some(o) => Known::Present(Arc::new(o)),
                                None => Known::Absent,
                            };
                            tx.send_replace(known);
                            let users: Vec<Arc<Notify>> = entries
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&key2)
                                .map(|e| e.users.values().cloned().collect())
                                .unwrap_or_default();
                            for u in users {
                                u.notify_one();
                            }
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "watch failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(10));
                        }
                        None => return,
                    }
                }
            },
            span,
        ));
        Entry {
            state: rx,
            users: HashMap::new(),
            task: task.abort_handle(),
        }
    }
}

/// The ConfigMaps and Secrets in use, and the Services.
#[derive(Debug)]
pub struct Objects {
    pub configmaps: Watched<ConfigMap>,
    pub secrets: Watched<Secret>,
    pub services: Services,
}

impl Objects {
    /// Starts the Services' watch (in the current tokio runtime).
    pub fn new(client: kube::Client) -> Self {
        Objects {
            configmaps: Watched::new(client.clone()),
            secrets: Watched::new(client.clone()),
            services: Services::spawn(client),
        }
    }

    /// Forgets everything the pod `user` used.
    pub fn release_all(&self, user: &str) {
        self.configmaps.release(user, &[]);
        self.secrets.release(user, &[]);
    }
}
