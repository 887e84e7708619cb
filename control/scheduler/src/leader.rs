//! Leader election through a Lease, as client-go's `leaderelection` does:
//! a candidate takes the Lease when it is free, released, or was not renewed
//! for `leaseDurationSeconds` *as observed on the candidate's own clock*; the
//! leader renews it every retry period and gives up leading when it could
//! not renew within the renew deadline. Writes are compare-and-swap on the
//! Lease's resourceVersion, so two candidates never both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::time::Instant;

/// Where the Lease is and its timings (kube-scheduler's defaults).
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            namespace: "kube-system".into(),
            name: "shoal-scheduler".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What one attempt to take or renew the Lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold it (taken or renewed).
    Held,
    /// Someone else holds it and renewed it recently.
    HeldBy(String),
    /// Another write got there first; try again.
    Raced,
}

/// The last Lease record seen, and when (on our clock) it last changed.
#[derive(Debug)]
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    transitions: i32,
    at: Instant,
}

/// One candidate.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    identity: String,
    observed: Option<Observed>,
}

/// A name for this process: host name, process id and a random part, as
/// kube-scheduler's `hostname_UUID`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}_{}_{}", std::process::id(), &random[..8])
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX).max(1)
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig, identity: String) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            identity,
            observed: None,
        }
    }

    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != spec.renew_time);
        if changed {
            self.observed = Some(Observed {
                holder,
                renew_time: spec.renew_time,
                transitions: spec.lease_transitions.unwrap_or(0),
                at: Instant::now(),
            });
        }
    }

    /// One try at taking or renewing the Lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let name = self.config.name.clone();
        let Some(mut lease) = self.api.get_opt(&name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds(self.config.lease_duration)),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Raced),
                Err(e) => Err(e),
            };
        };
        self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = spec
            .lease_duration_seconds
            .map_or(self.config.lease_duration, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            });
        let observed_at = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
        if !holder.is_empty() && holder != self.identity && observed_at.elapsed() < duration {
            return Ok(Attempt::HeldBy(holder));
        }
        let mut new = spec.clone();
        new.holder_identity = Some(self.identity.clone());
        new.lease_duration_seconds = Some(seconds(self.config.lease_duration));
        new.renew_time = Some(now.clone());
        if holder != self.identity {
            new.acquire_time = Some(now);
            new.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new);
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Raced),
            Err(e) => Err(e),
        }
    }

    /// A retry period with client-go's jitter (up to 1.2 times more).
    fn retry_wait(&self) -> Duration {
        let jitter = f64::from(uuid::Uuid::new_v4().as_u128() as u16) / f64::from(u16::MAX);
        self.config.retry_period.mul_f64(1.0 + 1.2 * jitter)
    }

    /// Waits until this candidate leads.
    pub async fn acquire(&mut self) {
        let mut last_holder = String::new();
        loop {
            let attempt =
                tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(Attempt::Held)) => {
                    tracing::info!(identity = %self.identity, lease = %self.config.name, "became the leader");
                    return;
                }
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    if holder != last_holder {
                        tracing::info!(leader = %holder, "another scheduler leads; waiting");
                        last_holder = holder;
                    }
                }
                Ok(Ok(Attempt::Raced)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot read or write the leader Lease"),
                Err(_) => tracing::warn!("the leader Lease did not answer in time"),
            }
            tokio::time::sleep(self.retry_wait()).await;
        }
    }

    /// While leading: renews every retry period; returns once leadership is
    /// lost (another holder, or no renewal within the renew deadline).
    pub async fn hold(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            let attempt = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(Attempt::Held)) => renewed = Instant::now(),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::warn!(leader = %holder, "lost the leader Lease");
                    return;
                }
                Ok(Ok(Attempt::Raced)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
                Err(_) => {}
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                tracing::warn!(deadline = ?self.config.renew_deadline, "could not renew the leader Lease in time; no longer leading");
                return;
            }
        }
    }

    /// Gives the Lease up (on shutdown) so another candidate takes it at once.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let now = MicroTime(Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(
                self.observed
                    .as_ref()
                    .map_or(spec.lease_transitions.unwrap_or(0), |o| o.transitions),
            ),
            ..LeaseSpec::default()
        });
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("released the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the leader Lease"),
        }
    }
}
