//! Which pod updates a pod worker acts on. The watch delivers every write
//! to a pod, most of them the echo of the worker's own status writes; as
//! the kubelet's config source does (`checkAndUpdatePod`), a worker
//! reconciles again only when the spec or the metadata changed, or when
//! the status changed to something it did not write. Everything else
//! waits for the runtime, a probe, an object, a timer or the resync.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn rv_of(pod: &Pod) -> Option<u64> {
    pod.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
}

/// The metadata without what every write changes.
fn stable_meta(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        resource_version: None,
        managed_fields: None,
        ..meta.clone()
    }
}

/// Whether `new` asks a worker that last reconciled `last` to reconcile
/// again. `ours` is the worker's last status write, with the
/// resourceVersion it made: a status at or before that write is ours (or
/// older), and a later one that equals it changed nothing.
pub(crate) fn matters(last: &Pod, new: &Pod, ours: Option<&(u64, PodStatus)>) -> bool {
    if last.spec != new.spec || stable_meta(&last.metadata) != stable_meta(&new.metadata) {
        return true;
    }
    match ours {
        Some((written, status)) => match rv_of(new) {
            Some(rv) if rv <= *written => false,
            _ => new.status.as_ref() != Some(status),
        },
        None => last.status != new.status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(rv: u64, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u", "resourceVersion": rv.to_string(),
                         "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn status(p: &Pod) -> PodStatus {
        p.status.clone().unwrap()
    }

    #[test]
    fn the_echo_of_our_own_write_is_not_acted_on() {
        let last = pod(5, "Pending");
        let echo = pod(7, "Running");
        let ours = (7, status(&echo));
        assert!(!matters(&last, &echo, Some(&ours)));
        // An older write of ours arriving late is not acted on either.
        assert!(!matters(&last, &pod(6, "Pending"), Some(&ours)));
        // A later write by someone else that changed nothing: same.
        assert!(!matters(&last, &pod(9, "Running"), Some(&ours)));
    }

    #[test]
    fn someone_elses_status_spec_or_metadata_is_acted_on() {
        let last = pod(5, "Running");
        let ours = (5, status(&last));
        assert!(matters(&last, &pod(8, "Failed"), Some(&ours)));
        assert!(
            matters(&last, &pod(8, "Succeeded"), None),
            "no write yet: any status change matters"
        );
        assert!(!matters(&last, &pod(8, "Running"), None));

        let mut deleting = pod(8, "Running");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
            ));
        assert!(matters(&last, &deleting, Some(&ours)));

        let mut relabelled = pod(8, "Running");
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "web".into());
        assert!(matters(&last, &relabelled, Some(&ours)));

        let mut respecced = pod(8, "Running");
        respecced.spec.as_mut().unwrap().containers[0].image = Some("j".into());
        assert!(matters(&last, &respecced, Some(&ours)));
    }
}
