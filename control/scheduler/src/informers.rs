//! The watches that keep the cache and the queue current (kube-runtime
//! `watcher`s over nodes, pods and RuntimeClasses): bound pods are counted on
//! their nodes, unbound pods for this scheduler are queued, and changes that
//! can make room (a node added or changed, a pod gone, a RuntimeClass added)
//! send unschedulable pods back to be tried.

use crate::cache::{Cache, is_terminal, uid_of};
use crate::queue::Queue;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What the watch handlers share.
#[derive(Debug)]
pub struct Shared {
    pub cache: Mutex<Cache>,
    pub queue: Queue,
    pub scheduler_name: String,
}

impl Shared {
    pub fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this scheduler places the pod.
    fn responsible(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("");
        name.is_empty() || name == self.scheduler_name
    }

    pub fn apply_node(&self, node: &Node) {
        if self.cache().upsert_node(node) {
            self.queue.move_all();
        }
    }

    pub fn delete_node(&self, node: &Node) {
        self.cache()
            .remove_node(node.metadata.name.as_deref().unwrap_or_default());
    }

    pub fn apply_pod(&self, pod: Pod) {
        if is_terminal(&pod) {
            return self.delete_pod(&pod);
        }
        let uid = uid_of(&pod);
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if bound {
            self.cache().add_bound_pod(&pod);
            self.queue.remove(&uid);
        } else if self.responsible(&pod) && pod.metadata.deletion_timestamp.is_none() {
            // A pod being bound shows unbound until the binding is seen.
            if !self.cache().is_assumed(&uid) {
                self.queue.add(&uid, Arc::new(pod));
            }
        } else {
            self.queue.remove(&uid);
        }
    }

    pub fn delete_pod(&self, pod: &Pod) {
        let uid = uid_of(pod);
        self.queue.remove(&uid);
        if self.cache().remove_pod(&uid) {
            self.queue.move_all();
        }
    }

    pub fn apply_runtime_class(&self, rc: RuntimeClass) {
        self.cache().upsert_runtime_class(rc);
        self.queue.move_all();
    }

    pub fn delete_runtime_class(&self, rc: &RuntimeClass) {
        self.cache()
            .remove_runtime_class(rc.metadata.name.as_deref().unwrap_or_default());
    }
}

/// A kind the scheduler watches, and what its events do.
trait Watched: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static {
    /// The key a re-list is reconciled by.
    fn key(&self) -> String;
    fn apply(self, shared: &Shared);
    fn delete(&self, shared: &Shared);
    /// Drops what a re-list no longer holds.
    fn retain(shared: &Shared, keys: &HashSet<String>);
}

impl Watched for Node {
    fn key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
    fn apply(self, shared: &Shared) {
        shared.apply_node(&self);
    }
    fn delete(&self, shared: &Shared) {
        shared.delete_node(self);
    }
    fn retain(shared: &Shared, keys: &HashSet<String>) {
        shared.cache().retain_nodes(keys);
    }
}

impl Watched for Pod {
    fn key(&self) -> String {
        uid_of(self)
    }
    fn apply(self, shared: &Shared) {
        shared.apply_pod(self);
    }
    fn delete(&self, shared: &Shared) {
        shared.delete_pod(self);
    }
    fn retain(shared: &Shared, keys: &HashSet<String>) {
        shared.cache().retain_pods(keys);
        shared.queue.retain(keys);
    }
}

impl Watched for RuntimeClass {
    fn key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
    fn apply(self, shared: &Shared) {
        shared.apply_runtime_class(self);
    }
    fn delete(&self, shared: &Shared) {
        shared.delete_runtime_class(self);
    }
    fn retain(shared: &Shared, keys: &HashSet<String>) {
        shared.cache().retain_runtime_classes(keys);
    }
}

/// Which watch.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Nodes,
    Pods,
    RuntimeClasses,
}

/// Runs one watch until it is dropped, counting its first full list on
/// `synced`. Errors are logged; the watcher retries with back-off.
pub async fn run(
    kind: Kind,
    client: kube::Client,
    shared: Arc<Shared>,
    synced: watch::Sender<u32>,
) {
    match kind {
        Kind::Nodes => follow(Api::<Node>::all(client), &shared, &synced).await,
        Kind::Pods => follow(Api::<Pod>::all(client), &shared, &synced).await,
        Kind::RuntimeClasses => follow(Api::<RuntimeClass>::all(client), &shared, &synced).await,
    }
}

/// The watch loop: applies each event; after a (re-)list, drops what the
/// list no longer holds and retries unschedulable pods.
async fn follow<K: Watched>(api: Api<K>, shared: &Shared, synced: &watch::Sender<u32>) {
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut listing: Option<HashSet<String>> = None;
    let mut first = true;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing = Some(HashSet::new()),
            Ok(Event::InitApply(obj)) => {
                if let Some(seen) = listing.as_mut() {
                    seen.insert(obj.key());
                }
                obj.apply(shared);
            }
            Ok(Event::InitDone) => {
                if let Some(seen) = listing.take() {
                    K::retain(shared, &seen);
                }
                shared.queue.move_all();
                if first {
                    first = false;
                    synced.send_modify(|n| *n += 1);
                }
            }
            Ok(Event::Apply(obj)) => obj.apply(shared),
            Ok(Event::Delete(obj)) => obj.delete(shared),
            Err(e) => tracing::warn!(error = %e, kind = %K::kind(&()), "watch failed; retrying"),
        }
    }
}
