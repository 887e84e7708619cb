//! The etcd backend: [`EtcdStore`] keeps the store in a real etcd cluster.
//!
//! Every key lives under [`EtcdConfig::prefix`], and etcd's revisions are the
//! store's revisions: each operation is one etcd request (a transaction for
//! compare-and-swap). Failures become [`StoreError`]s in one place,
//! `map_error`: a request that never left (no connection) is `Unavailable`,
//! a write whose answer was lost is `Indeterminate`.
//!
//! A watch is a task per stream. When etcd drops the stream (a member dies,
//! a connection breaks) the task reconnects and resumes after the last
//! revision it delivered, so the consumer sees no gap and no duplicate.

use crate::Store;
use crate::error::StoreError;
use crate::kv::{
    KeyValue, LeaseId, RangeRequest, RangeResponse, Revision, WatchEvent, WatchStream, check_key,
    check_value, lossy, prefix_end,
};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient,
    LeaseClient, PutOptions, ResponseHeader, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient,
    WatchOptions, WatchRequestSender, WatchResponse, WatchResponseStream,
};
use futures::StreamExt;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

/// The longest a TCP connection to one member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on busy connections. etcd answers pings more frequent than
/// its `--grpc-keepalive-min-time` (5 s) with GOAWAY, and pings on idle
/// connections count against that, so idle connections are not pinged.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses can hold many 1.5 MiB values; tonic's default is 4 MiB.
const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Events buffered between a watch task and its consumer.
const WATCH_BUFFER: usize = 256;
/// Pauses between attempts of a request that did not reach etcd.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(200);
/// Pauses between attempts to reopen a broken watch.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How long a requested progress notification is held back in case events
/// it overtook are still on their way (etcd before 3.4.25 and 3.5.8 does
/// not order it after pending events; etcd-io/etcd#15220).
const PROGRESS_SETTLE: Duration = Duration::from_millis(100);

/// Where the etcd cluster is and how to talk to it.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs of the members, `http://host:port`.
    pub endpoints: Vec<String>,
    /// Prepended to every key; stripped from every key returned.
    pub prefix: Vec<u8>,
    /// A watch idle this long asks etcd for its progress; zero never asks.
    pub progress_interval: Duration,
    /// The longest one request may take, retries included.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// Keys under `/registry/`, progress every 5 s, requests time out after 10 s.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: b"/registry/".to_vec(),
            progress_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A [`Store`] backed by an etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    config: Arc<EtcdConfig>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("prefix", &lossy(&self.config.prefix))
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the cluster and checks, with a linearizable read, that it
    /// answers; fails with [`StoreError::Unavailable`] naming the endpoints
    /// if it does not within the request timeout.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints configured".into()));
        }
        let endpoints = config.endpoints.join(", ");
        let unreachable = |source: EtcdError| {
            StoreError::unavailable(EtcdError::Unreachable {
                endpoints: endpoints.clone(),
                source: Box::new(source),
            })
        };
        let options = ConnectOptions::new()
            .with_connect_timeout(config.request_timeout.min(CONNECT_TIMEOUT))
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            // A member cut off from the leader refuses requests and cancels
            // watches instead of serving stale data.
            .with_require_leader(true);
        let connecting = Client::connect(&config.endpoints, Some(options));
        let client = match timeout(config.request_timeout, connecting).await {
            Err(_) => return Err(unreachable(EtcdError::Timeout(config.request_timeout))),
            Ok(Err(
                e @ (etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_)),
            )) => {
                return Err(StoreError::Invalid(format!("bad etcd endpoint: {e}")));
            }
            Ok(Err(e)) => return Err(unreachable(e.into())),
            Ok(Ok(client)) => client,
        };
        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            lease: client.lease_client(),
            config: Arc::new(config),
        };
        let probe = store.revision_probe();
        store
            .attempt(false, || {
                let (mut kv, key, options) = (store.kv.clone(), probe.0.clone(), probe.1.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await
            .map_err(unreachable)?;
        tracing::info!(endpoints = ?store.config.endpoints, "connected to etcd");
        Ok(store)
    }

    /// The configuration this store was connected with.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        [&self.config.prefix[..], key].concat()
    }

    /// Every attempt a request gets; enough to try each member twice.
    fn attempts(&self) -> usize {
        2 * self.config.endpoints.len() + 2
    }

    /// A cheap read whose header carries the current revision.
    fn revision_probe(&self) -> (Vec<u8>, GetOptions) {
        let key = non_empty(self.config.prefix.clone());
        (key, GetOptions::new().with_count_only())
    }

    /// Runs `request` under the request timeout, repeating it while it
    /// fails without having reached etcd (or, for reads, transiently).
    async fn attempt<T, F, Fut>(&self, write: bool, request: F) -> Result<T, EtcdError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        with_retries(self.config.request_timeout, self.attempts(), write, request).await
    }

    /// [`Self::attempt`], with failures mapped for `call`.
    async fn call<T, F, Fut>(&self, call: Call, request: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.attempt(call.is_write(), request)
            .await
            .map_err(|e| map_error(e, call))
    }

    async fn txn(&self, call: Call, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.call(call, || {
            let (mut kv, txn) = (self.kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// Fills in what `map_error` cannot know: the compacted revision and the
    /// current one.
    async fn refine(&self, err: StoreError) -> StoreError {
        match err {
            StoreError::Compacted { requested, .. } => StoreError::Compacted {
                requested,
                compacted: self
                    .compacted_revision(requested)
                    .await
                    .unwrap_or(requested),
            },
            StoreError::FutureRevision { requested, .. } => StoreError::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            },
            other => other,
        }
    }

    /// The revision etcd has compacted to, learned by watching from
    /// `requested` (etcd reports it there; errors do not carry it).
    async fn compacted_revision(&self, requested: Revision) -> Option<Revision> {
        let key = non_empty(self.config.prefix.clone());
        let options = WatchOptions::new()
            .with_range(range_end(&self.config.prefix))
            .with_start_revision(requested);
        let mut client = self.watch.clone();
        let probe = async move {
            let mut stream = client.watch(key, Some(options)).await.ok()?;
            while let Ok(Some(resp)) = stream.message().await {
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision());
                }
                if !resp.created() {
                    return None;
                }
            }
            None
        };
        timeout(self.config.request_timeout, probe)
            .await
            .ok()
            .flatten()
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        let full = self.full_key(key);
        let mut resp = self
            .call(Call::Read(0), || {
                let (mut kv, key) = (self.kv.clone(), full.clone());
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| convert(kv, &self.config.prefix)))
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        if !req.prefix.is_empty() {
            check_key(&req.prefix)?;
        }
        if req.revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative revision {}",
                req.revision
            )));
        }
        let prefix = self.full_key(&req.prefix);
        let start = match &req.start {
            Some(start) if !start.starts_with(&req.prefix) => {
                return Err(StoreError::Invalid(format!(
                    "start key {:?} is not under the prefix {:?}",
                    lossy(start),
                    lossy(&req.prefix)
                )));
            }
            Some(start) => {
                check_key(start)?;
                self.full_key(start)
            }
            None => non_empty(prefix.clone()),
        };
        let mut options = GetOptions::new().with_range(range_end(&prefix));
        if req.limit > 0 {
            options = options.with_limit(i64::try_from(req.limit).unwrap_or(i64::MAX));
        }
        if req.revision > 0 {
            options = options.with_revision(req.revision);
        }
        let result = self
            .call(Call::Read(req.revision), || {
                let (mut kv, key, options) = (self.kv.clone(), start.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => return Err(self.refine(e).await),
        };
        let revision = match req.revision {
            0 => header_revision(resp.header(), Call::Read(0))?,
            revision => revision,
        };
        let more = resp.more();
        let kvs = resp
            .take_kvs()
            .into_iter()
            .map(|kv| convert(kv, &self.config.prefix))
            .collect();
        Ok(RangeResponse {
            kvs,
            revision,
            more,
        })
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let (key, options) = self.revision_probe();
        let resp = self
            .call(Call::Read(0), || {
                let (mut kv, key, options) = (self.kv.clone(), key.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await?;
        header_revision(resp.header(), Call::Read(0))
    }

    async fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        check_key(key)?;
        check_value(value)?;
        let full = self.full_key(key);
        let call = Call::Write(lease);
        let txn = Txn::new()
            .when([Compare::version(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value, Some(put_options(lease)))]);
        let resp = self.txn(call, txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: lossy(key) });
        }
        header_revision(resp.header(), call)
    }

    async fn update(
        &self,
        key: &[u8],
        value: &[u8],
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        check_key(key)?;
        check_value(value)?;
        let full = self.full_key(key);
        let call = Call::Write(lease);
        // `version > 0` keeps `expected == 0` from creating a missing key.
        let txn = Txn::new()
            .when([
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
                Compare::version(full.clone(), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(full.clone(), value, Some(put_options(lease)))])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(call, txn).await?;
        if resp.succeeded() {
            return header_revision(resp.header(), call);
        }
        Err(self.refused(key, expected, &resp))
    }

    async fn delete(
        &self,
        key: &[u8],
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StoreError> {
        check_key(key)?;
        let full = self.full_key(key);
        let call = Call::Write(None);
        let prev = |kvs: &[etcd_client::KeyValue]| {
            kvs.first()
                .map(|kv| convert(kv.clone(), &self.config.prefix))
        };
        let Some(expected) = expected else {
            let mut resp = self
                .call(call, || {
                    let (mut kv, key) = (self.kv.clone(), full.clone());
                    let options = DeleteOptions::new().with_prev_key();
                    async move { kv.delete(key, Some(options)).await }
                })
                .await?;
            let revision = header_revision(resp.header(), call)?;
            return match prev(&resp.take_prev_kvs()) {
                Some(kv) if resp.deleted() > 0 => Ok((revision, kv)),
                _ => Err(StoreError::NotFound { key: lossy(key) }),
            };
        };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
                Compare::version(full.clone(), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(call, txn).await?;
        if !resp.succeeded() {
            return Err(self.refused(key, expected, &resp));
        }
        let revision = header_revision(resp.header(), call)?;
        let deleted = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(d) => prev(d.prev_kvs()),
            _ => None,
        });
        deleted
            .map(|kv| (revision, kv))
            .ok_or_else(|| map_error(EtcdError::Malformed("a delete without its value"), call))
    }

    async fn watch(&self, prefix: &[u8], from: Revision) -> Result<WatchStream, StoreError> {
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        if from < 0 {
            return Err(StoreError::Invalid(format!("negative revision {from}")));
        }
        let start = match from {
            0 => self.current_revision().await? + 1,
            from => from,
        };
        let full = self.full_key(prefix);
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let mut watcher = Watcher {
            client: self.watch.clone(),
            key: non_empty(full.clone()),
            range_end: range_end(&full),
            prefix: self.config.prefix.clone(),
            progress_interval: self.config.progress_interval,
            request_timeout: self.config.request_timeout,
            attempts: self.attempts(),
            tx,
            next: start,
            opened_at: start,
            last_event: start - 1,
            held: None,
        };
        // The first stream is opened here so that a failure shows at once
        // and the watch is in place when this returns.
        let first = watcher
            .open()
            .await
            .map_err(|e| map_error(e, Call::Read(start)))?;
        let span = tracing::info_span!("etcd_watch", prefix = %lossy(prefix), from = start);
        tokio::spawn(watcher.run(first).instrument(span));
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if revision <= 0 {
            return Ok(());
        }
        let result = self
            .call(Call::Compact(revision), || {
                let mut kv = self.kv.clone();
                async move { kv.compact(revision, None).await }
            })
            .await;
        match result {
            Ok(_) | Err(StoreError::Compacted { .. }) => Ok(()),
            Err(e) => Err(self.refine(e).await),
        }
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let seconds = (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1);
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        let resp = self
            .call(Call::Write(None), || {
                let mut lease = self.lease.clone();
                async move { lease.grant(seconds, None).await }
            })
            .await?;
        if !resp.error().is_empty() {
            return Err(StoreError::Invalid(format!(
                "etcd refused the lease: {}",
                resp.error()
            )));
        }
        Ok(LeaseId(resp.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        let ttl = self
            .call(Call::Write(Some(lease)), || {
                let mut client = self.lease.clone();
                async move {
                    // Opening the stream renews once, but etcd-client keeps
                    // that answer's TTL to itself; renew once more to learn it.
                    let (mut keeper, mut answers) = client.keep_alive(lease.0).await?;
                    keeper.keep_alive().await?;
                    match answers.message().await? {
                        Some(answer) => Ok(answer.ttl()),
                        None => Err(etcd_client::Error::LeaseKeepAliveError(
                            "the keep-alive stream ended".into(),
                        )),
                    }
                }
            })
            .await?;
        match u64::try_from(ttl) {
            Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
            _ => Err(StoreError::LeaseNotFound(lease.0)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.call(Call::Write(Some(lease)), || {
            let mut client = self.lease.clone();
            async move { client.revoke(lease.0).await }
        })
        .await?;
        Ok(())
    }
}

impl EtcdStore {
    /// Why a guarded write's comparison failed, from its `get` else-branch.
    fn refused(&self, key: &[u8], expected: Revision, resp: &TxnResponse) -> StoreError {
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
            _ => None,
        });
        match current {
            Some(kv) => StoreError::Conflict {
                key: lossy(key),
                expected,
                current: Box::new(convert(kv, &self.config.prefix)),
            },
            None => StoreError::NotFound { key: lossy(key) },
        }
    }
}

fn put_options(lease: Option<LeaseId>) -> PutOptions {
    match lease {
        Some(lease) => PutOptions::new().with_lease(lease.0),
        None => PutOptions::new(),
    }
}

/// etcd refuses empty keys; the smallest key stands in for an empty prefix.
fn non_empty(key: Vec<u8>) -> Vec<u8> {
    if key.is_empty() { vec![0] } else { key }
}

/// The end of the range of keys under `prefix`; `[0]` means "no end".
fn range_end(prefix: &[u8]) -> Vec<u8> {
    non_empty(prefix_end(prefix))
}

fn header_revision(header: Option<&ResponseHeader>, call: Call) -> Result<Revision, StoreError> {
    header
        .map(ResponseHeader::revision)
        .ok_or_else(|| map_error(EtcdError::Malformed("a response without a header"), call))
}

/// An etcd key-value with `prefix` stripped from its key.
fn convert(kv: etcd_client::KeyValue, prefix: &[u8]) -> KeyValue {
    let (create_revision, mod_revision, version, lease) = (
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
    );
    let (mut key, value) = kv.into_key_value();
    if key.starts_with(prefix) {
        key.drain(..prefix.len());
    }
    KeyValue {
        key,
        value,
        create_revision,
        mod_revision,
        version,
        lease: (lease != 0).then_some(LeaseId(lease)),
    }
}

/// Runs `request` under `limit`, repeating it (at most `attempts` times)
/// while it fails without having reached etcd or, for reads, transiently.
async fn with_retries<T, F, Fut>(
    limit: Duration,
    attempts: usize,
    write: bool,
    mut request: F,
) -> Result<T, EtcdError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + limit;
    let mut pause = RETRY_MIN;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match timeout_at(deadline, request()).await {
            Err(_) => return Err(EtcdError::Timeout(limit)),
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => EtcdError::from(e),
        };
        if attempt >= attempts || !err.worth_retrying(write) || Instant::now() + pause >= deadline {
            return Err(err);
        }
        tracing::debug!(error = %err, attempt, "retrying an etcd request");
        sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const FAILED_PRECONDITION: i32 = 9;
const ABORTED: i32 = 10;
const OUT_OF_RANGE: i32 = 11;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;
const DATA_LOSS: i32 = 15;

fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "Ok",
        "Cancelled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("an unknown status")
}

/// A failed call to etcd, kept as the source of a [`StoreError`].
#[derive(Debug, thiserror::Error)]
enum EtcdError {
    /// A gRPC status, from etcd or from the client's own transport.
    #[error("{}: {message}", code_name(*code))]
    Status { code: i32, message: String },
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("etcd sent {0}")]
    Malformed(&'static str),
    #[error("the etcd client failed")]
    Client(#[source] etcd_client::Error),
    #[error("cannot reach etcd at {endpoints}")]
    Unreachable {
        endpoints: String,
        #[source]
        source: Box<EtcdError>,
    },
}

impl From<etcd_client::Error> for EtcdError {
    fn from(err: etcd_client::Error) -> Self {
        match err {
            etcd_client::Error::GRpcStatus(status) => EtcdError::Status {
                code: status.code() as i32,
                message: status.message().to_owned(),
            },
            other => EtcdError::Client(other),
        }
    }
}

impl EtcdError {
    /// The request never left this process: the connection to the member
    /// could not be made (tonic reports that as `Unavailable` with the
    /// connector's message, never a server's).
    fn never_sent(&self) -> bool {
        match self {
            EtcdError::Status { code, message } => {
                *code == UNAVAILABLE
                    && (message == "dns error"
                        || (message.starts_with("tcp ") && message.ends_with(" error")))
            }
            EtcdError::Client(etcd_client::Error::TransportError(_)) => true,
            EtcdError::Unreachable { .. } => true,
            _ => false,
        }
    }

    /// A failure after which the request may have been carried out.
    fn answer_lost(&self) -> bool {
        match self {
            EtcdError::Status { code, .. } => matches!(
                *code,
                CANCELLED
                    | UNKNOWN
                    | DEADLINE_EXCEEDED
                    | ABORTED
                    | INTERNAL
                    | UNAVAILABLE
                    | DATA_LOSS
            ),
            // Client-side failures (a stream that broke, an I/O error) come
            // after the request was handed to the connection.
            EtcdError::Timeout(_) | EtcdError::Malformed(_) | EtcdError::Client(_) => true,
            EtcdError::Unreachable { .. } => false,
        }
    }

    fn worth_retrying(&self, write: bool) -> bool {
        self.never_sent()
            || (!write && matches!(self, EtcdError::Status { .. }) && self.answer_lost())
    }
}

/// What a call to etcd was, which decides how its failure reads.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// A read at a revision (0: the current one); safe to repeat.
    Read(Revision),
    /// A write, or a lease request, naming its lease if any.
    Write(Option<LeaseId>),
    /// A compaction to the revision.
    Compact(Revision),
}

impl Call {
    fn is_write(self) -> bool {
        !matches!(self, Call::Read(_))
    }
}

/// The one place etcd failures become [`StoreError`]s.
///
/// A request that never reached etcd is `Unavailable`. When the answer to
/// a write is lost (transport failure after sending, timeout, or etcd's own
/// `Unavailable`/`DeadlineExceeded`/... statuses) it is `Indeterminate`;
/// for a read, `Unavailable`. etcd's error messages are its API here: they
/// are stable across etcd 3.x. `Compacted` and `FutureRevision` carry the
/// requested revision in place of the compacted or current one, which
/// callers fill in (`EtcdStore::refine`).
fn map_error(err: EtcdError, call: Call) -> StoreError {
    let revision = match call {
        Call::Read(revision) | Call::Compact(revision) => revision,
        Call::Write(_) => 0,
    };
    let lease = match call {
        Call::Write(lease) => lease,
        _ => None,
    };
    if err.never_sent() {
        return StoreError::unavailable(err);
    }
    match &err {
        EtcdError::Status { code, message } => {
            if message.contains("lease not found")
                && let Some(lease) = lease
            {
                return StoreError::LeaseNotFound(lease.0);
            }
            if *code == OUT_OF_RANGE && message.contains("required revision has been compacted") {
                return StoreError::Compacted {
                    requested: revision,
                    compacted: revision,
                };
            }
            if *code == OUT_OF_RANGE && message.contains("required revision is a future revision") {
                return StoreError::FutureRevision {
                    requested: revision,
                    current: revision,
                };
            }
            if matches!(*code, INVALID_ARGUMENT | FAILED_PRECONDITION) {
                return StoreError::Invalid(message.clone());
            }
        }
        EtcdError::Client(etcd_client::Error::LeaseKeepAliveError(message))
            if message.contains("lease not found")
                && let Some(lease) = lease =>
        {
            return StoreError::LeaseNotFound(lease.0);
        }
        EtcdError::Client(
            e @ (etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_)),
        ) => return StoreError::Invalid(e.to_string()),
        _ => {}
    }
    if err.answer_lost() && call.is_write() {
        StoreError::indeterminate(err)
    } else {
        StoreError::unavailable(err)
    }
}

/// One watch: a task that feeds etcd's watch responses to a consumer,
/// reopening the etcd stream whenever it breaks.
struct Watcher {
    client: WatchClient,
    /// The etcd key range watched.
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The store's key prefix, stripped from every key.
    prefix: Vec<u8>,
    progress_interval: Duration,
    request_timeout: Duration,
    attempts: usize,
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
    /// Every change below this revision has been delivered.
    next: Revision,
    /// The revision the current etcd stream started at.
    opened_at: Revision,
    /// The revision of the last event delivered.
    last_event: Revision,
    /// A requested progress notification waiting to settle, and until when.
    held: Option<(Revision, Instant)>,
}

/// How one etcd stream ended.
enum Ended {
    /// The consumer is gone, or was told the watch is over.
    Done,
    /// etcd or the connection dropped the stream.
    Broken { reason: String, delivered: bool },
}

impl Watcher {
    /// Opens an etcd watch from `next`.
    async fn open(&mut self) -> Result<(WatchRequestSender, WatchResponseStream), EtcdError> {
        let options = WatchOptions::new()
            .with_range(self.range_end.clone())
            .with_start_revision(self.next)
            .with_prev_key()
            .with_progress_notify();
        let stream = with_retries(self.request_timeout, self.attempts, false, || {
            let (mut client, key, options) =
                (self.client.clone(), self.key.clone(), options.clone());
            async move { client.watch(key, Some(options)).await }
        })
        .await?;
        self.opened_at = self.next;
        self.held = None;
        Ok(stream.split())
    }

    async fn run(mut self, first: (WatchRequestSender, WatchResponseStream)) {
        let mut stream = Some(first);
        let mut pause = RECONNECT_MIN;
        loop {
            let (sender, responses) = match stream.take() {
                Some(stream) => stream,
                None => {
                    let tx = self.tx.clone();
                    let opened = tokio::select! {
                        () = tx.closed() => return,
                        opened = self.open() => opened,
                    };
                    match opened {
                        Ok(stream) => stream,
                        Err(e) => {
                            tracing::debug!(error = %e, next = self.next, "cannot reopen the etcd watch");
                            if !self.pause(&mut pause).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            match self.pump(sender, responses).await {
                Ended::Done => return,
                Ended::Broken { reason, delivered } => {
                    tracing::info!(%reason, next = self.next, "etcd watch stream broke; resuming");
                    if delivered {
                        pause = RECONNECT_MIN;
                    }
                    if !self.pause(&mut pause).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits before reconnecting, doubling the next wait; false when the
    /// consumer left meanwhile.
    async fn pause(&self, pause: &mut Duration) -> bool {
        let wait = *pause;
        *pause = (*pause * 2).min(RECONNECT_MAX);
        tokio::select! {
            () = self.tx.closed() => false,
            () = sleep(wait) => true,
        }
    }

    /// Forwards one etcd stream's responses until it ends.
    async fn pump(
        &mut self,
        mut sender: WatchRequestSender,
        mut responses: WatchResponseStream,
    ) -> Ended {
        let interval = self.progress_interval;
        let idle_for = |from: Instant| {
            if interval.is_zero() {
                from + Duration::from_secs(86400 * 365)
            } else {
                from + interval
            }
        };
        let idle = sleep_until(idle_for(Instant::now()));
        tokio::pin!(idle);
        let mut delivered = false;
        let broken = |reason: String, delivered| Ended::Broken { reason, delivered };
        loop {
            let settle = self.held.map(|(_, at)| at);
            tokio::select! {
                () = self.tx.closed() => return Ended::Done,
                message = responses.message() => match message {
                    Ok(Some(resp)) => {
                        delivered = true;
                        idle.as_mut().reset(idle_for(Instant::now()));
                        if let Some(ended) = self.handle(resp).await {
                            return ended;
                        }
                    }
                    Ok(None) => return broken("etcd ended the stream".into(), delivered),
                    Err(e) => return broken(EtcdError::from(e).to_string(), delivered),
                },
                () = &mut idle => {
                    idle.as_mut().reset(idle_for(Instant::now()));
                    if let Err(e) = sender.request_progress().await {
                        return broken(EtcdError::from(e).to_string(), delivered);
                    }
                }
                () = sleep_until(settle.unwrap_or_else(Instant::now)), if settle.is_some() => {
                    if let Some((revision, _)) = self.held.take()
                        && !self.progress(revision).await
                    {
                        return Ended::Done;
                    }
                }
            }
        }
    }

    /// Handles one response; `Some` when the stream is over.
    async fn handle(&mut self, resp: WatchResponse) -> Option<Ended> {
        if resp.compact_revision() > 0 {
            let err = StoreError::Compacted {
                requested: self.opened_at,
                compacted: resp.compact_revision(),
            };
            let _ = self.tx.send(Err(err)).await;
            return Some(Ended::Done);
        }
        if resp.canceled() {
            let reason = format!("etcd canceled the watch: {}", resp.cancel_reason());
            return Some(Ended::Broken {
                reason,
                delivered: false,
            });
        }
        if resp.created() {
            return None;
        }
        let events = resp.events();
        if events.is_empty() {
            let revision = resp.header()?.revision();
            if resp.watch_id() < 0 {
                // Answers a progress request: hold it until it settles.
                let (revision, at) = match self.held {
                    Some((held, at)) => (held.max(revision), at),
                    None => (revision, Instant::now() + PROGRESS_SETTLE),
                };
                self.held = Some((revision, at));
                return None;
            }
            // etcd's own periodic notification, ordered after all events.
            return (!self.progress(revision).await).then_some(Ended::Done);
        }
        if let Some((held, _)) = self.held.take() {
            let first = events
                .first()
                .and_then(|e| e.kv())
                .map_or(0, etcd_client::KeyValue::mod_revision);
            if first > held {
                if !self.progress(held).await {
                    return Some(Ended::Done);
                }
            } else {
                tracing::debug!(
                    progress = held,
                    event = first,
                    "dropped a progress notification that overtook events"
                );
            }
        }
        let floor = self.last_event;
        for event in events {
            let Some(event) = self.event(event) else {
                continue;
            };
            let revision = event.revision();
            if revision <= floor {
                tracing::debug!(revision, "skipped an event delivered before");
                continue;
            }
            self.last_event = self.last_event.max(revision);
            if self.tx.send(Ok(event)).await.is_err() {
                return Some(Ended::Done);
            }
        }
        self.next = self.next.max(self.last_event + 1);
        None
    }

    /// Delivers progress up to `revision` unless it would go backwards;
    /// false when the consumer is gone.
    async fn progress(&mut self, revision: Revision) -> bool {
        if revision + 1 < self.next {
            return true;
        }
        self.next = revision + 1;
        self.tx
            .send(Ok(WatchEvent::Progress { revision }))
            .await
            .is_ok()
    }

    fn event(&self, event: &etcd_client::Event) -> Option<WatchEvent> {
        let kv = event.kv()?;
        let prev = event.prev_kv().map(|p| convert(p.clone(), &self.prefix));
        Some(match event.event_type() {
            EventType::Put => WatchEvent::Put {
                kv: convert(kv.clone(), &self.prefix),
                prev,
            },
            EventType::Delete => WatchEvent::Delete {
                // etcd omits the previous value only once it is compacted.
                prev: prev.unwrap_or_else(|| KeyValue {
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 0,
                    version: 0,
                    lease: None,
                    ..convert(kv.clone(), &self.prefix)
                }),
                revision: kv.mod_revision(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn status(code: i32, message: &str) -> EtcdError {
        EtcdError::Status {
            code,
            message: message.into(),
        }
    }

    const RESOURCE_EXHAUSTED: i32 = 8;
    const NOT_FOUND: i32 = 5;

    #[test]
    fn a_request_that_never_left_is_unavailable_even_for_writes() {
        for call in [Call::Read(0), Call::Write(None), Call::Compact(3)] {
            let err = map_error(status(UNAVAILABLE, "tcp connect error"), call);
            assert!(
                matches!(err, StoreError::Unavailable { .. }),
                "{call:?}: {err:?}"
            );
            assert!(err.is_determinate());
        }
    }

    #[test]
    fn a_lost_answer_is_indeterminate_for_writes_and_unavailable_for_reads() {
        let lost = [
            status(UNAVAILABLE, "etcdserver: request timed out"),
            status(DEADLINE_EXCEEDED, "context deadline exceeded"),
            status(CANCELLED, "operation was canceled"),
            status(UNKNOWN, "connection reset"),
            EtcdError::Timeout(Duration::from_secs(1)),
        ];
        for err in lost {
            let text = err.to_string();
            let write = map_error(err, Call::Write(None));
            assert!(
                matches!(write, StoreError::Indeterminate { .. }),
                "{text}: {write:?}"
            );
        }
        let read = map_error(status(UNAVAILABLE, "etcdserver: no leader"), Call::Read(0));
        assert!(matches!(read, StoreError::Unavailable { .. }), "{read:?}");
        let read = map_error(EtcdError::Timeout(Duration::from_secs(1)), Call::Read(0));
        assert!(matches!(read, StoreError::Unavailable { .. }), "{read:?}");
    }

    #[test]
    fn refusals_before_applying_are_determinate() {
        let err = map_error(
            status(RESOURCE_EXHAUSTED, "etcdserver: too many requests"),
            Call::Write(None),
        );
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        let err = map_error(
            status(INVALID_ARGUMENT, "etcdserver: request is too large"),
            Call::Write(None),
        );
        assert!(matches!(err, StoreError::Invalid(m) if m.contains("too large")));
    }

    #[test]
    fn compaction_and_future_revisions_are_recognised() {
        let err = map_error(
            status(
                OUT_OF_RANGE,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            Call::Read(7),
        );
        assert!(matches!(
            err,
            StoreError::Compacted {
                requested: 7,
                compacted: 7
            }
        ));
        let err = map_error(
            status(
                OUT_OF_RANGE,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            Call::Compact(99),
        );
        assert!(matches!(
            err,
            StoreError::FutureRevision { requested: 99, .. }
        ));
    }

    #[test]
    fn a_missing_lease_is_named() {
        let lease = Some(LeaseId(42));
        let err = map_error(
            status(NOT_FOUND, "etcdserver: requested lease not found"),
            Call::Write(lease),
        );
        assert!(matches!(err, StoreError::LeaseNotFound(42)), "{err:?}");
        let err = map_error(
            EtcdError::Client(etcd_client::Error::LeaseKeepAliveError(
                "lease not found".into(),
            )),
            Call::Write(lease),
        );
        assert!(matches!(err, StoreError::LeaseNotFound(42)), "{err:?}");
    }

    #[test]
    fn grpc_statuses_from_the_client_are_read() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "tcp connect error");
        let err = EtcdError::from(etcd_client::Error::GRpcStatus(io.into()));
        assert!(err.never_sent(), "{err:?}");
        assert_eq!(err.to_string(), "Unavailable: tcp connect error");
    }

    #[test]
    fn an_unreachable_cluster_is_named_once_in_the_chain() {
        let err = map_error(
            EtcdError::Unreachable {
                endpoints: "http://127.0.0.1:1".into(),
                source: Box::new(status(UNAVAILABLE, "tcp connect error")),
            },
            Call::Read(0),
        );
        assert!(matches!(err, StoreError::Unavailable { .. }));
        let source = err.source().unwrap();
        assert_eq!(
            source.to_string(),
            "cannot reach etcd at http://127.0.0.1:1"
        );
        assert_eq!(
            source.source().unwrap().to_string(),
            "Unavailable: tcp connect error"
        );
    }

    #[test]
    fn only_unsent_or_transient_reads_are_retried() {
        assert!(status(UNAVAILABLE, "tcp connect error").worth_retrying(true));
        assert!(!status(UNAVAILABLE, "etcdserver: request timed out").worth_retrying(true));
        assert!(status(UNAVAILABLE, "etcdserver: leader changed").worth_retrying(false));
        assert!(
            !status(OUT_OF_RANGE, "mvcc: required revision has been compacted")
                .worth_retrying(false)
        );
    }

    #[test]
    fn key_ranges_never_use_the_empty_key() {
        assert_eq!(non_empty(Vec::new()), vec![0]);
        assert_eq!(range_end(b""), vec![0]);
        assert_eq!(range_end(&[0xff]), vec![0]);
        assert_eq!(range_end(b"/a/"), b"/a0".to_vec());
    }
}
