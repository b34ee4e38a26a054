//! The central side: accept edge connections, read one request per stream,
//! hand it to a [`BatchHandler`], write its answer.
//!
//! Invariants:
//! - The edge identity comes from the verified client certificate, never
//!   from the request; a request whose batch id names another edge is
//!   answered `Reject{EdgeMismatch}` before its payload is read.
//! - A malformed stream costs that stream only: it is answered
//!   `Reject{Malformed}`, counted, and the connection and server go on.
//! - Every stream is its own task, so one slow batch never holds up others.
//! - Shutdown stops accepting connections and streams, abandons requests
//!   still being received, lets handlers already running finish and their
//!   answers reach the edge, then closes the endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hourglass_model::BatchId;
use hourglass_pki::{EdgeIdentity, IdentityError, edge_identity};
use quinn::{Connection, Incoming, RecvStream, SendStream, VarInt};
use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::codec::{
    ControlRequest, ControlResponse, FrameError, PREFIX_LEN, RejectReason, Request, RequestReader,
    Response, StreamKind, decode_control_request, encode_control_response, encode_response,
    stream_kind,
};

/// Stream error code: central refused the request and is answering why.
pub const STOP_REFUSED: VarInt = VarInt::from_u32(1);
/// Stream error code: central is shutting down; send the batch again later.
pub const RESET_SHUTTING_DOWN: VarInt = VarInt::from_u32(2);
/// Stream error code: central failed to produce an answer; send again later.
pub const RESET_INTERNAL: VarInt = VarInt::from_u32(3);
/// Connection close code: the client certificate names no edge.
pub const CLOSE_NOT_AN_EDGE: VarInt = VarInt::from_u32(10);
/// Connection close code: central is shutting down (with reason
/// [`SHUTDOWN_REASON`]); reconnect later or to another central.
pub const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0);
pub const SHUTDOWN_REASON: &[u8] = b"central shutting down";

/// What central does with a received batch: archive it durably, then Ack;
/// Busy when it cannot now; Reject when it never will.
#[async_trait::async_trait]
pub trait BatchHandler: Send + Sync {
    /// `edge` is the verified sender; `batch_id.edge_id` equals its name.
    /// `batch` is the batch file exactly as sent: its header has been
    /// checked, its checksum and contents have not.
    async fn handle(&self, edge: EdgeIdentity, batch_id: BatchId, batch: Vec<u8>) -> Response;
}

/// What central answers on the control channel (see the codec's control
/// frames). Only edges with a verified certificate get here.
#[async_trait::async_trait]
pub trait ControlHandler: Send + Sync {
    /// The control state, or `Unchanged` when the edge has `have_version`.
    async fn sync(&self, edge: &EdgeIdentity, have_version: u64) -> ControlResponse;
    /// The plugin blob whose SHA-256 is `sha256`.
    async fn blob(&self, edge: &EdgeIdentity, sha256: [u8; 32]) -> ControlResponse;
}

/// Counters a server keeps; read them with [`ServerStats::snapshot`].
#[derive(Debug, Default)]
pub struct ServerStats {
    connections: AtomicU64,
    handshakes_failed: AtomicU64,
    not_an_edge: AtomicU64,
    acked: AtomicU64,
    busy: AtomicU64,
    rejected_malformed: AtomicU64,
    rejected_edge_mismatch: AtomicU64,
    rejected_by_handler: AtomicU64,
    streams_failed: AtomicU64,
    control_syncs: AtomicU64,
    control_blobs: AtomicU64,
    control_refused: AtomicU64,
}

/// A point-in-time copy of [`ServerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Edge connections accepted (handshake done, identity read).
    pub connections: u64,
    /// Handshakes that failed: unknown CA, revoked or expired certificate,
    /// wrong ALPN, or a peer that went away.
    pub handshakes_failed: u64,
    /// Verified certificates that name no edge (closed at once).
    pub not_an_edge: u64,
    /// Streams answered Ack / Busy.
    pub acked: u64,
    pub busy: u64,
    /// Streams answered Reject, by who refused.
    pub rejected_malformed: u64,
    pub rejected_edge_mismatch: u64,
    pub rejected_by_handler: u64,
    /// Streams that ended without an answer (reset by the edge, connection
    /// lost, shutdown, handler answer not encodable).
    pub streams_failed: u64,
    /// Control requests answered: Sync (State or Unchanged), Blob (bytes),
    /// and refused ones (malformed, unknown blob, no state, control off).
    pub control_syncs: u64,
    pub control_blobs: u64,
    pub control_refused: u64,
}

impl ServerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: get(&self.connections),
            handshakes_failed: get(&self.handshakes_failed),
            not_an_edge: get(&self.not_an_edge),
            acked: get(&self.acked),
            busy: get(&self.busy),
            rejected_malformed: get(&self.rejected_malformed),
            rejected_edge_mismatch: get(&self.rejected_edge_mismatch),
            rejected_by_handler: get(&self.rejected_by_handler),
            streams_failed: get(&self.streams_failed),
            control_syncs: get(&self.control_syncs),
            control_blobs: get(&self.control_blobs),
            control_refused: get(&self.control_refused),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn count_response(&self, response: &Response) {
        Self::bump(match response {
            Response::Ack { .. } => &self.acked,
            Response::Busy { .. } => &self.busy,
            Response::Reject { .. } => &self.rejected_by_handler,
        });
    }
}

/// A server over an endpoint made by [`crate::server_endpoint`].
pub struct Server {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
}

struct Shared {
    handler: Arc<dyn BatchHandler>,
    control: Option<Arc<dyn ControlHandler>>,
    stats: Arc<ServerStats>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("endpoint", &self.endpoint)
            .field("stats", &self.shared.stats)
            .finish_non_exhaustive()
    }
}

/// Serves `endpoint` until `shutdown` is cancelled (see [`Server::serve`]).
pub async fn serve(
    endpoint: quinn::Endpoint,
    handler: Arc<dyn BatchHandler>,
    shutdown: CancellationToken,
) {
    Server::new(endpoint, handler).serve(shutdown).await;
}

impl Server {
    pub fn new(endpoint: quinn::Endpoint, handler: Arc<dyn BatchHandler>) -> Self {
        Server {
            endpoint,
            shared: Arc::new(Shared {
                handler,
                control: None,
                stats: Arc::default(),
            }),
        }
    }

    /// Serves the control channel with `control` too (without it, control
    /// requests are answered `Reject{Unsupported}`). Call before serving.
    pub fn with_control(mut self, control: Arc<dyn ControlHandler>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.control = Some(control);
        }
        self
    }

    /// The live counters (they keep counting while the server runs).
    pub fn stats(&self) -> Arc<ServerStats> {
        self.shared.stats.clone()
    }

    /// Accepts connections and streams until `shutdown` is cancelled, then
    /// drains (see the module doc) and closes the endpoint.
    pub async fn serve(self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        loop {
            let incoming = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break, // endpoint closed by its owner
                },
            };
            tasks.spawn(connection(incoming, self.shared.clone(), shutdown.clone()));
        }
        // Refuse new connections while the old ones drain.
        self.endpoint.set_server_config(None);
        tasks.close();
        tasks.wait().await;
        self.endpoint.close(CLOSE_SHUTDOWN, SHUTDOWN_REASON);
        self.endpoint.wait_idle().await;
    }
}

async fn connection(incoming: Incoming, shared: Arc<Shared>, shutdown: CancellationToken) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(error) => {
            ServerStats::bump(&shared.stats.handshakes_failed);
            tracing::info!(%remote, %error, "edge handshake failed");
            return;
        }
    };
    let edge = match peer_edge(&conn) {
        Ok(edge) => edge,
        Err(error) => {
            ServerStats::bump(&shared.stats.not_an_edge);
            tracing::warn!(%remote, %error, "closing connection: not an edge certificate");
            conn.close(CLOSE_NOT_AN_EDGE, b"not an edge certificate");
            return;
        }
    };
    ServerStats::bump(&shared.stats.connections);
    let span = tracing::info_span!("edge", edge = %edge.name, cert = %edge.serial, %remote);
    let streams = TaskTracker::new();
    async {
        tracing::debug!("edge connected");
        loop {
            let (send, recv) = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                stream = conn.accept_bi() => match stream {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(%error, "edge connection ended");
                        break;
                    }
                },
            };
            streams.spawn(
                stream(send, recv, edge.clone(), shared.clone(), shutdown.clone())
                    .in_current_span(),
            );
        }
        streams.close();
        streams.wait().await;
        if shutdown.is_cancelled() {
            conn.close(CLOSE_SHUTDOWN, SHUTDOWN_REASON);
        }
    }
    .instrument(span)
    .await;
}

/// The identity in the peer's verified certificate.
fn peer_edge(conn: &Connection) -> Result<EdgeIdentity, IdentityError> {
    let certs = conn
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(IdentityError::NotAnEdgeCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NotAnEdgeCertificate)?;
    edge_identity(leaf)
}

/// Why a request got no handler call.
enum Refusal {
    Reject(RejectReason, String),
    /// The stream broke; nobody to answer.
    Lost(String),
}

async fn stream(
    mut send: SendStream,
    mut recv: RecvStream,
    edge: EdgeIdentity,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let stats = &shared.stats;
    let read = tokio::select! {
        read = read_stream(&mut recv, &edge) => read,
        () = shutdown.cancelled() => {
            // Not yet ours: the edge keeps the batch and sends it again.
            let _ = recv.stop(RESET_SHUTTING_DOWN);
            let _ = send.reset(RESET_SHUTTING_DOWN);
            ServerStats::bump(&stats.streams_failed);
            return;
        }
    };
    let response = match read {
        Ok(StreamRequest::Control(request)) => {
            control(send, request, &edge, &shared).await;
            return;
        }
        Ok(StreamRequest::Batch(Request { batch_id, payload })) => {
            let span = tracing::info_span!("batch", batch = %batch_id, bytes = payload.len());
            let response = shared
                .handler
                .handle(edge.clone(), batch_id, payload)
                .instrument(span)
                .await;
            stats.count_response(&response);
            response
        }
        Err(Refusal::Reject(reason, message)) => {
            ServerStats::bump(match reason {
                RejectReason::EdgeMismatch => &stats.rejected_edge_mismatch,
                _ => &stats.rejected_malformed,
            });
            tracing::warn!(reason = reason.as_str(), %message, "request rejected");
            // Tell the edge to stop sending a payload nobody will read.
            let _ = recv.stop(STOP_REFUSED);
            Response::Reject { reason, message }
        }
        Err(Refusal::Lost(error)) => {
            ServerStats::bump(&stats.streams_failed);
            tracing::debug!(%error, "stream lost before the request was complete");
            return;
        }
    };
    let bytes = match encode_response(&response) {
        Ok(bytes) => bytes,
        Err(error) => {
            ServerStats::bump(&stats.streams_failed);
            tracing::error!(%error, ?response, "handler answer cannot be encoded");
            let _ = send.reset(RESET_INTERNAL);
            return;
        }
    };
    if let Err(error) = send.write_all(&bytes).await {
        tracing::debug!(%error, "could not send the answer");
        return;
    }
    let _ = send.finish();
    // Return once the edge has the answer, so a shutdown right after
    // cannot close the connection under it.
    let _ = send.stopped().await;
}

/// What a stream carries.
enum StreamRequest {
    Batch(Request),
    Control(ControlRequest),
}

/// Reads the prefix, then a batch request or a control request.
async fn read_stream(recv: &mut RecvStream, edge: &EdgeIdentity) -> Result<StreamRequest, Refusal> {
    let malformed = |error: FrameError| Refusal::Reject(RejectReason::Malformed, error.to_string());
    let mut prefix = [0u8; PREFIX_LEN];
    read_exact(recv, &mut prefix).await?;
    match stream_kind(&prefix).map_err(malformed)? {
        StreamKind::Batch => read_request(recv, edge, prefix)
            .await
            .map(StreamRequest::Batch),
        StreamKind::Control { len } => {
            // At most 40 bytes: a control request is tiny and fixed-size.
            let mut bytes = vec![0u8; len];
            bytes[..PREFIX_LEN].copy_from_slice(&prefix);
            read_exact(recv, &mut bytes[PREFIX_LEN..]).await?;
            expect_end(recv).await?;
            decode_control_request(&bytes)
                .map(StreamRequest::Control)
                .map_err(malformed)
        }
    }
}

/// Fills `buf` from the stream; a stream that ends first is malformed.
async fn read_exact(recv: &mut RecvStream, buf: &mut [u8]) -> Result<(), Refusal> {
    let mut filled = 0;
    while filled < buf.len() {
        match recv.read(&mut buf[filled..]).await {
            Ok(Some(n)) => filled += n,
            Ok(None) => {
                return Err(Refusal::Reject(
                    RejectReason::Malformed,
                    FrameError::Truncated {
                        needed: buf.len() as u64,
                        got: filled as u64,
                    }
                    .to_string(),
                ));
            }
            Err(error) => return Err(Refusal::Lost(error.to_string())),
        }
    }
    Ok(())
}

/// A request is self-delimiting: the stream must end right after it.
async fn expect_end(recv: &mut RecvStream) -> Result<(), Refusal> {
    let mut extra = [0u8; 64];
    match recv.read(&mut extra).await {
        Ok(None) => Ok(()),
        Ok(Some(n)) => Err(Refusal::Reject(
            RejectReason::Malformed,
            FrameError::TrailingBytes { extra: n as u64 }.to_string(),
        )),
        Err(error) => Err(Refusal::Lost(error.to_string())),
    }
}

/// Answers one control request and finishes the stream.
async fn control(
    mut send: SendStream,
    request: ControlRequest,
    edge: &EdgeIdentity,
    shared: &Shared,
) {
    let stats = &shared.stats;
    let response = match (&shared.control, request) {
        (None, _) => ControlResponse::Reject {
            reason: RejectReason::Unsupported,
            message: "this central does not serve the control channel".into(),
        },
        (Some(control), ControlRequest::Sync { have_version }) => {
            control.sync(edge, have_version).await
        }
        (Some(control), ControlRequest::Blob { sha256 }) => control.blob(edge, sha256).await,
    };
    ServerStats::bump(match (&response, request) {
        (ControlResponse::Reject { .. }, _) => &stats.control_refused,
        (_, ControlRequest::Sync { .. }) => &stats.control_syncs,
        (_, ControlRequest::Blob { .. }) => &stats.control_blobs,
    });
    let bytes = match encode_control_response(&response) {
        Ok(bytes) => bytes,
        Err(error) => {
            ServerStats::bump(&stats.streams_failed);
            tracing::error!(%error, "control answer cannot be encoded");
            let _ = send.reset(RESET_INTERNAL);
            return;
        }
    };
    if let Err(error) = send.write_all(&bytes).await {
        tracing::debug!(%error, "could not send the control answer");
        return;
    }
    let _ = send.finish();
    let _ = send.stopped().await;
}

async fn read_request(
    recv: &mut RecvStream,
    edge: &EdgeIdentity,
    prefix: [u8; PREFIX_LEN],
) -> Result<Request, Refusal> {
    let malformed = |error: FrameError| Refusal::Reject(RejectReason::Malformed, error.to_string());
    let mut reader = RequestReader::new();
    // The prefix is read already; the reader starts with exactly it.
    let want = reader.unfilled();
    if want.len() != PREFIX_LEN {
        return Err(malformed(FrameError::ReaderFailed));
    }
    want.copy_from_slice(&prefix);
    reader.advance(PREFIX_LEN).map_err(malformed)?;
    let mut head_checked = false;
    while !reader.is_complete() {
        match recv.read(reader.unfilled()).await {
            Ok(Some(n)) => reader.advance(n).map_err(malformed)?,
            Ok(None) => return Err(malformed(reader.truncated())),
            Err(error) => return Err(Refusal::Lost(error.to_string())),
        }
        if !head_checked && let Some(head) = reader.head() {
            head_checked = true;
            if head.batch_id.edge_id != edge.name.as_str() {
                return Err(Refusal::Reject(
                    RejectReason::EdgeMismatch,
                    format!(
                        "batch {} names edge {:?}, but this connection's certificate is for edge {:?}; set edge_id to the certificate's edge or install this edge's own certificate",
                        head.batch_id,
                        head.batch_id.edge_id,
                        edge.name.as_str()
                    ),
                ));
            }
        }
    }
    expect_end(recv).await?;
    reader.into_request().map_err(malformed)
}
