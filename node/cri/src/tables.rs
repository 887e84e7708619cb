//! [`Tables`]: the pod sandboxes and containers in memory, behind the
//! runtime's one lock, with the indexes that keep the kubelet's filtered
//! calls O(result) on a node of many pods: containers by pod, and pods and
//! containers by label pair (the kubelet selects by
//! `io.kubernetes.pod.uid`). Rows are added and removed only through the
//! methods here, which keep the indexes in step; labels never change after
//! creation, so a row changed in place keeps its index entries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use crate::ipam::Ipam;
use crate::records::{ContainerRecord, PodRecord};
use crate::runtime::Container;

/// Everything the runtime knows, behind one lock.
#[derive(Debug)]
pub(crate) struct Tables {
    pods: BTreeMap<String, PodRecord>,
    containers: BTreeMap<String, Container>,
    /// [`PodRecord::name_key`] -> pod id.
    pod_names: HashMap<String, String>,
    /// [`ContainerRecord::name_key`] -> container id.
    container_names: HashMap<String, String>,
    /// Pod id -> the ids of its containers (a pod with none has no entry).
    by_pod: BTreeMap<String, BTreeSet<String>>,
    pod_labels: LabelIndex,
    container_labels: LabelIndex,
    pub ipam: Ipam,
}

/// Label key -> value -> ids of the rows with that label.
#[derive(Debug, Default)]
struct LabelIndex(HashMap<String, HashMap<String, BTreeSet<String>>>);

impl LabelIndex {
    fn insert(&mut self, id: &str, labels: &HashMap<String, String>) {
        for (k, v) in labels {
            self.0
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(id.to_owned());
        }
    }

    fn remove(&mut self, id: &str, labels: &HashMap<String, String>) {
        for (k, v) in labels {
            let Some(values) = self.0.get_mut(k) else {
                continue;
            };
            if let Some(ids) = values.get_mut(v) {
                ids.remove(id);
                if ids.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.0.remove(k);
            }
        }
    }

    /// The smallest id set among the selector's pairs (every row the
    /// selector matches is in it), or `None` for an empty selector.
    fn narrowest(&self, selector: &HashMap<String, String>) -> Option<Vec<&String>> {
        static NONE: BTreeSet<String> = BTreeSet::new();
        selector
            .iter()
            .map(|(k, v)| self.0.get(k).and_then(|vs| vs.get(v)).unwrap_or(&NONE))
            .min_by_key(|ids| ids.len())
            .map(|ids| ids.iter().collect())
    }
}

impl Tables {
    pub fn new(ipam: Ipam) -> Self {
        Self {
            pods: BTreeMap::new(),
            containers: BTreeMap::new(),
            pod_names: HashMap::new(),
            container_names: HashMap::new(),
            by_pod: BTreeMap::new(),
            pod_labels: LabelIndex::default(),
            container_labels: LabelIndex::default(),
            ipam,
        }
    }

    pub fn pods(&self) -> &BTreeMap<String, PodRecord> {
        &self.pods
    }

    pub fn containers(&self) -> &BTreeMap<String, Container> {
        &self.containers
    }

    /// A pod to change in place (not its id, config or labels).
    pub fn pod_mut(&mut self, id: &str) -> Option<&mut PodRecord> {
        self.pods.get_mut(id)
    }

    /// A container to change in place (not its id, pod, config or labels).
    pub fn container_mut(&mut self, id: &str) -> Option<&mut Container> {
        self.containers.get_mut(id)
    }

    /// The id of the pod with this [`PodRecord::name_key`].
    pub fn pod_named(&self, key: &str) -> Option<&String> {
        self.pod_names.get(key)
    }

    /// The id of the container with this [`ContainerRecord::name_key`].
    pub fn container_named(&self, key: &str) -> Option<&String> {
        self.container_names.get(key)
    }

    pub fn insert_pod(&mut self, pod: PodRecord) {
        self.pod_names
            .insert(PodRecord::name_key(&pod.config), pod.id.clone());
        self.pod_labels.insert(&pod.id, &pod.config.labels);
        self.pods.insert(pod.id.clone(), pod);
    }

    pub fn remove_pod(&mut self, id: &str) -> Option<PodRecord> {
        let pod = self.pods.remove(id)?;
        self.pod_names.remove(&PodRecord::name_key(&pod.config));
        self.pod_labels.remove(id, &pod.config.labels);
        Some(pod)
    }

    pub fn insert_container(&mut self, c: Container) {
        let r = &c.rec;
        self.container_names.insert(
            ContainerRecord::name_key(&r.pod_id, &r.config),
            r.id.clone(),
        );
        self.by_pod
            .entry(r.pod_id.clone())
            .or_default()
            .insert(r.id.clone());
        self.container_labels.insert(&r.id, &r.config.labels);
        self.containers.insert(r.id.clone(), c);
    }

    pub fn remove_container(&mut self, id: &str) -> Option<Container> {
        let c = self.containers.remove(id)?;
        let r = &c.rec;
        self.container_names
            .remove(&ContainerRecord::name_key(&r.pod_id, &r.config));
        if let Some(ids) = self.by_pod.get_mut(&r.pod_id) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_pod.remove(&r.pod_id);
            }
        }
        self.container_labels.remove(id, &r.config.labels);
        Some(c)
    }

    /// The containers of the pod with exactly this id, by id.
    pub fn pod_containers<'a>(&'a self, pod_id: &str) -> impl Iterator<Item = &'a Container> {
        self.by_pod
            .get(pod_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.containers.get(id))
    }

    /// The containers a list filter can match, by id: a superset of the
    /// matches that is O(result) when the filter names an id prefix, a pod
    /// id prefix or labels (the caller applies the whole filter to it).
    pub fn container_candidates<'a>(
        &'a self,
        id_prefix: &str,
        pod_prefix: &str,
        selector: &HashMap<String, String>,
    ) -> Vec<&'a Container> {
        if !id_prefix.is_empty() {
            return with_prefix(&self.containers, id_prefix)
                .map(|(_, c)| c)
                .collect();
        }
        if !pod_prefix.is_empty() {
            let mut ids: Vec<&String> = with_prefix(&self.by_pod, pod_prefix)
                .flat_map(|(_, ids)| ids)
                .collect();
            ids.sort_unstable();
            return self.rows(&self.containers, ids);
        }
        match self.container_labels.narrowest(selector) {
            Some(ids) => self.rows(&self.containers, ids),
            None => self.containers.values().collect(),
        }
    }

    /// The pods a list filter can match, by id (as
    /// [`container_candidates`](Self::container_candidates)).
    pub fn pod_candidates<'a>(
        &'a self,
        id_prefix: &str,
        selector: &HashMap<String, String>,
    ) -> Vec<&'a PodRecord> {
        if !id_prefix.is_empty() {
            return with_prefix(&self.pods, id_prefix).map(|(_, p)| p).collect();
        }
        match self.pod_labels.narrowest(selector) {
            Some(ids) => self.rows(&self.pods, ids),
            None => self.pods.values().collect(),
        }
    }

    fn rows<'a, V>(&self, map: &'a BTreeMap<String, V>, ids: Vec<&String>) -> Vec<&'a V> {
        ids.into_iter().filter_map(|id| map.get(id)).collect()
    }
}

/// The entries whose key starts with `prefix`, in order.
fn with_prefix<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &str,
) -> impl Iterator<Item = (&'a String, &'a V)> {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use k8s_cri::v1::{ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata};
    use tokio::sync::watch;

    use super::*;
    use crate::ipam::{Cidr, Ipam};
    use crate::records::ImageInfo;
    use crate::spec::Spec;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pod(id: &str, uid: &str) -> PodRecord {
        PodRecord {
            id: id.into(),
            config: PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: id.into(),
                    uid: uid.into(),
                    ..Default::default()
                }),
                labels: labels(&[("io.kubernetes.pod.uid", uid)]),
                ..Default::default()
            },
            runtime_handler: String::new(),
            created_at: 1,
            ready: true,
            ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
        }
    }

    fn container(id: &str, pod_id: &str, uid: &str, name: &str) -> Container {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            labels: labels(&[
                ("io.kubernetes.pod.uid", uid),
                ("io.kubernetes.container.name", name),
            ]),
            ..Default::default()
        };
        let image = ImageInfo {
            id: "sha256:00".into(),
            name: "hello".into(),
            image_ref: "sha256:00".into(),
            path: "/images/00".into(),
        };
        let spec = Spec::default();
        Container {
            rec: ContainerRecord::created(id.into(), pod_id.into(), config, image, spec, None, 1),
            live: None,
            done: watch::Sender::new(false),
            core_module: true,
        }
    }

    fn ids<'a>(rows: impl IntoIterator<Item = &'a Container>) -> Vec<&'a str> {
        rows.into_iter().map(|c| c.rec.id.as_str()).collect()
    }

    fn tables() -> Tables {
        let mut t = Tables::new(Ipam::new(Cidr::parse("10.0.0.0/24").unwrap()));
        t.insert_pod(pod("pa1", "uid-a"));
        t.insert_pod(pod("pa2", "uid-b"));
        t.insert_pod(pod("pb", "uid-c"));
        t.insert_container(container("c3", "pa1", "uid-a", "web"));
        t.insert_container(container("c1", "pa1", "uid-a", "side"));
        t.insert_container(container("c2", "pa2", "uid-b", "web"));
        t.insert_container(container("d1", "pb", "uid-c", "web"));
        t
    }

    #[test]
    fn candidates_by_id_pod_and_labels_come_sorted_by_id() {
        let t = tables();
        let none = HashMap::new();
        assert_eq!(
            ids(t.container_candidates("c", "", &none)),
            ["c1", "c2", "c3"]
        );
        assert_eq!(
            ids(t.container_candidates("", "pa", &none)),
            ["c1", "c2", "c3"]
        );
        assert_eq!(ids(t.container_candidates("", "pa1", &none)), ["c1", "c3"]);
        assert!(t.container_candidates("", "zz", &none).is_empty());
        let web = labels(&[("io.kubernetes.container.name", "web")]);
        assert_eq!(
            ids(t.container_candidates("", "", &web)),
            ["c2", "c3", "d1"]
        );
        let narrow = labels(&[
            ("io.kubernetes.container.name", "web"),
            ("io.kubernetes.pod.uid", "uid-c"),
        ]);
        assert_eq!(ids(t.container_candidates("", "", &narrow)), ["d1"]);
        let unknown = labels(&[("io.kubernetes.pod.uid", "nobody")]);
        assert!(t.container_candidates("", "", &unknown).is_empty());
        assert_eq!(t.container_candidates("", "", &none).len(), 4);

        let uid_b = labels(&[("io.kubernetes.pod.uid", "uid-b")]);
        let pods: Vec<&str> = t
            .pod_candidates("", &uid_b)
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(pods, ["pa2"]);
        assert_eq!(t.pod_candidates("pa", &none).len(), 2);
        assert_eq!(ids(t.pod_containers("pa1")), ["c1", "c3"]);
    }

    #[test]
    fn removing_rows_empties_their_index_entries() {
        let mut t = tables();
        assert!(t.remove_container("c1").is_some());
        assert!(t.remove_container("c1").is_none());
        assert_eq!(ids(t.pod_containers("pa1")), ["c3"]);
        assert!(t.container_named("pa1/side/0").is_none());
        for id in ["c2", "c3", "d1"] {
            t.remove_container(id);
        }
        assert!(t.by_pod.is_empty());
        assert!(t.container_labels.0.is_empty());
        for id in ["pa1", "pa2", "pb"] {
            assert!(t.remove_pod(id).is_some());
        }
        assert!(t.pod_labels.0.is_empty());
        assert!(t.pod_names.is_empty());
    }
}
