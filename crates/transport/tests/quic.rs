//! Real QUIC on 127.0.0.1 with real certificates from `hourglass_pki`:
//! what an edge and central see when they talk.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hourglass_model::{Batch, BatchHeader, BatchId, RawHit, encode_batch};
use hourglass_pki::{Ca, EdgeName, RevocationList, certificate_serial};
use hourglass_transport::codec::{decode_response, encode_request};
use hourglass_transport::server;
use hourglass_transport::{
    BatchHandler, Client, ClientCerts, ControlRequest, ControlResponse, EdgeIdentity, RejectReason,
    Response, SendError, Server, ServerCerts, ServerStats, StatsSnapshot, client_endpoint,
    server_endpoint,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// TLS alert codes (RFC 8446 §6).
const ALERT_CERTIFICATE_REVOKED: u8 = 44;
const ALERT_UNKNOWN_CA: u8 = 48;
const ALERT_DECRYPT_ERROR: u8 = 51;

const LOCALHOST: &str = "127.0.0.1:0";
const SERVER_NAME: &str = "localhost";

/// Every test finishes well within this, or fails instead of hanging.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn now() -> SystemTime {
    // webpki checks validity against the real clock.
    SystemTime::now()
}

fn bind_addr() -> SocketAddr {
    LOCALHOST.parse().expect("loopback address parses")
}

struct Pki {
    ca: Ca,
    crl: RevocationList,
}

impl Pki {
    fn new() -> Self {
        let issued = Ca::init(now()).expect("CA generation works");
        Pki {
            ca: Ca::load(&issued.cert_pem, &issued.key_pem).expect("fresh CA loads"),
            crl: RevocationList::new(),
        }
    }

    fn server_certs(&mut self) -> ServerCerts {
        let issued = self
            .ca
            .issue_server(&[SERVER_NAME], now())
            .expect("server cert");
        ServerCerts {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            ca_pem: self.ca.cert_pem().to_owned(),
            crl_pem: self.ca.sign_crl(&mut self.crl, now()).expect("signs CRL"),
        }
    }

    fn edge_certs(&self, name: &str) -> ClientCerts {
        let issued = self
            .ca
            .issue_edge(&EdgeName::new(name).expect("valid edge name"), now())
            .expect("edge cert");
        ClientCerts {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            ca_pem: self.ca.cert_pem().to_owned(),
        }
    }
}

/// Records what it was given and answers with a fixed response (or Ack).
#[derive(Default)]
struct Recorder {
    received: Mutex<Vec<(EdgeIdentity, BatchId, Vec<u8>)>>,
    answer: Mutex<Option<Response>>,
}

impl Recorder {
    fn received(&self) -> Vec<(EdgeIdentity, BatchId, Vec<u8>)> {
        self.received.lock().expect("not poisoned").clone()
    }
}

#[async_trait::async_trait]
impl BatchHandler for Recorder {
    async fn handle(&self, edge: EdgeIdentity, batch_id: BatchId, batch: Vec<u8>) -> Response {
        self.received
            .lock()
            .expect("not poisoned")
            .push((edge, batch_id.clone(), batch));
        self.answer
            .lock()
            .expect("not poisoned")
            .clone()
            .unwrap_or(Response::Ack { batch_id })
    }
}

struct Running {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(TEST_TIMEOUT, self.task)
            .await
            .expect("server drains and stops")
            .expect("server task does not panic");
    }

    /// Waits for counters updated by server tasks after the client is done.
    async fn stats_when(&self, done: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        for _ in 0..500 {
            let stats = self.stats.snapshot();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stats.snapshot()
    }
}

fn start(certs: &ServerCerts, handler: Arc<dyn BatchHandler>) -> Running {
    let endpoint = server_endpoint(bind_addr(), certs).expect("server endpoint binds");
    let addr = endpoint.local_addr().expect("bound address");
    let server = Server::new(endpoint, handler);
    let stats = server.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    Running {
        addr,
        stats,
        shutdown,
        task,
    }
}

fn client(certs: &ClientCerts) -> Client {
    let (endpoint, _edge) = client_endpoint(bind_addr(), certs).expect("client endpoint binds");
    Client::new(endpoint)
}

fn id(edge: &str, seq: u64) -> BatchId {
    BatchId {
        edge_id: edge.into(),
        seq,
    }
}

fn batch_file(edge: &str, seq: u64) -> Vec<u8> {
    encode_batch(&Batch {
        header: Some(BatchHeader {
            id: Some(id(edge, seq)),
            created_at_ms: 1_780_000_000_000,
            plugin_set: "v1".into(),
            hit_count: 1,
            ..Default::default()
        }),
        raw_hits: vec![RawHit {
            edge_id: edge.into(),
            seq,
            path_and_query: "/api/event".into(),
            // Incompressible-ish, so the file spans many QUIC packets.
            body: (0..200_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

async fn send_one(
    client: &Client,
    addr: SocketAddr,
    batch_id: &BatchId,
    batch: &[u8],
) -> Result<Response, SendError> {
    let conn = client.connect(addr, SERVER_NAME).await?;
    client.send_batch(&conn, batch_id, batch).await
}

#[tokio::test]
async fn batch_is_received_byte_identical_and_acked() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        let recorder = Arc::new(Recorder::default());
        let server = start(&pki.server_certs(), recorder.clone());
        let edge_certs = pki.edge_certs("fra-1");
        let batch = batch_file("fra-1", 42);

        let response = send_one(&client(&edge_certs), server.addr, &id("fra-1", 42), &batch)
            .await
            .expect("sent");

        assert_eq!(
            response,
            Response::Ack {
                batch_id: id("fra-1", 42)
            }
        );
        let received = recorder.received();
        assert_eq!(received.len(), 1);
        let (edge, batch_id, bytes) = &received[0];
        assert_eq!(edge.name.as_str(), "fra-1");
        let cert = CertificateDer::from_pem_slice(edge_certs.cert_pem.as_bytes()).expect("PEM");
        assert_eq!(Ok(edge.serial.clone()), certificate_serial(&cert));
        assert_eq!(batch_id, &id("fra-1", 42));
        assert!(bytes == &batch, "payload differs from what was sent");
        assert_eq!(
            server.stats_when(|s| s.acked == 1).await,
            StatsSnapshot {
                connections: 1,
                acked: 1,
                ..Default::default()
            }
        );
        server.stop().await;
    })
    .await
    .expect("test finishes in time");
}

#[tokio::test]
async fn client_with_a_certificate_from_another_ca_is_refused_at_the_handshake() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        let recorder = Arc::new(Recorder::default());
        let server = start(&pki.server_certs(), recorder.clone());
        // Same edge name, other CA; it trusts our CA so only central can refuse.
        let mut stranger = Pki::new().edge_certs("fra-1");
        stranger.ca_pem = pki.ca.cert_pem().to_owned();

        let error = send_one(
            &client(&stranger),
            server.addr,
            &id("fra-1", 1),
            &batch_file("fra-1", 1),
        )
        .await
        .expect_err("central refuses an unknown CA");

        // Both CAs are called "Hourglass CA" (another install of this
        // project), so webpki may find ours as the issuer and fail on the
        // signature (decrypt_error) rather than on the name (unknown_ca).
        assert!(
            matches!(
                error.tls_alert(),
                Some(ALERT_UNKNOWN_CA | ALERT_DECRYPT_ERROR)
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("issued by the project CA"),
            "{error}"
        );
        let stats = server.stats_when(|s| s.handshakes_failed == 1).await;
        assert_eq!(
            stats,
            StatsSnapshot {
                handshakes_failed: 1,
                ..Default::default()
            }
        );
        assert!(recorder.received().is_empty());
        server.stop().await;
    })
    .await
    .expect("test finishes in time");
}

#[tokio::test]
async fn revoked_edge_certificate_is_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        let revoked = pki.edge_certs("fra-1");
        let good = pki.edge_certs("ams-1");
        let cert = CertificateDer::from_pem_slice(revoked.cert_pem.as_bytes()).expect("PEM");
        pki.crl
            .revoke(certificate_serial(&cert).expect("serial"), now());
        let recorder = Arc::new(Recorder::default());
        let server = start(&pki.server_certs(), recorder.clone());

        let error = send_one(
            &client(&revoked),
            server.addr,
            &id("fra-1", 1),
            &batch_file("fra-1", 1),
        )
        .await
        .expect_err("central refuses a revoked certificate");
        assert_eq!(
            error.tls_alert(),
            Some(ALERT_CERTIFICATE_REVOKED),
            "{error}"
        );

        // The CRL shuts out that certificate only.
        let response = send_one(
            &client(&good),
            server.addr,
            &id("ams-1", 1),
            &batch_file("ams-1", 1),
        )
        .await
        .expect("an unrevoked edge still gets through");
        assert_eq!(
            response,
            Response::Ack {
                batch_id: id("ams-1", 1)
            }
        );

        let stats = server
            .stats_when(|s| s.handshakes_failed == 1 && s.acked == 1)
            .await;
        assert_eq!(
            stats,
            StatsSnapshot {
                connections: 1,
                handshakes_failed: 1,
                acked: 1,
                ..Default::default()
            }
        );
        let received = recorder.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].0.name.as_str(), "ams-1");
        server.stop().await;
    })
    .await
    .expect("test finishes in time");
}

#[tokio::test]
async fn batch_id_naming_another_edge_is_rejected() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        let recorder = Arc::new(Recorder::default());
        let server = start(&pki.server_certs(), recorder.clone());
        let client = client(&pki.edge_certs("fra-1"));
        let conn = client
            .connect(server.addr, SERVER_NAME)
            .await
            .expect("connects");

        let response = client
            .send_batch(&conn, &id("ams-1", 9), &batch_file("ams-1", 9))
            .await
            .expect("central answers");

        let Response::Reject { reason, message } = response else {
            panic!("expected a Reject, got {response:?}");
        };
        assert_eq!(reason, RejectReason::EdgeMismatch);
        assert!(
            message.contains("\"ams-1\"") && message.contains("\"fra-1\""),
            "{message}"
        );
        assert!(recorder.received().is_empty(), "the handler never sees it");

        // The same connection still carries this edge's own batches.
        let response = client
            .send_batch(&conn, &id("fra-1", 10), &batch_file("fra-1", 10))
            .await
            .expect("central answers");
        assert_eq!(
            response,
            Response::Ack {
                batch_id: id("fra-1", 10)
            }
        );
        let stats = server.stats_when(|s| s.acked == 1).await;
        assert_eq!(
            stats,
            StatsSnapshot {
                connections: 1,
                acked: 1,
                rejected_edge_mismatch: 1,
                ..Default::default()
            }
        );
        server.stop().await;
    })
    .await
    .expect("test finishes in time");
}

#[tokio::test]
async fn garbage_stream_is_rejected_and_the_next_stream_is_served() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        let recorder = Arc::new(Recorder::default());
        let server = start(&pki.server_certs(), recorder.clone());
        let client = client(&pki.edge_certs("fra-1"));
        let conn = client
            .connect(server.addr, SERVER_NAME)
            .await
            .expect("connects");

        let garbage: [&[u8]; 3] = [
            b"GET / HTTP/1.1\r\nHost: central\r\n\r\n",
            // A valid head whose payload is cut short by the end of stream.
            &encode_request(&id("fra-1", 1), &batch_file("fra-1", 1)).expect("encodes")[..100],
            b"HGQ",
        ];
        for bytes in garbage {
            let (mut send, mut recv) = conn.open_bi().await.expect("stream opens");
            // Central may stop reading early; the answer is what matters.
            let _ = send.write_all(bytes).await;
            let _ = send.finish();
            let answer = recv.read_to_end(4096).await.expect("central answers");
            match decode_response(&answer) {
                Ok(Response::Reject {
                    reason: RejectReason::Malformed,
                    ..
                }) => {}
                other => panic!("expected Reject(Malformed), got {other:?}"),
            }
        }

        let response = client
            .send_batch(&conn, &id("fra-1", 2), &batch_file("fra-1", 2))
            .await
            .expect("central still serves this connection");
        assert_eq!(
            response,
            Response::Ack {
                batch_id: id("fra-1", 2)
            }
        );
        let stats = server.stats_when(|s| s.acked == 1).await;
        assert_eq!(
            stats,
            StatsSnapshot {
                connections: 1,
                acked: 1,
                rejected_malformed: 3,
                ..Default::default()
            }
        );
        assert_eq!(recorder.received().len(), 1);
        server.stop().await;
    })
    .await
    .expect("test finishes in time");
}

#[tokio::test]
async fn busy_round_trips() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        let recorder = Arc::new(Recorder::default());
        *recorder.answer.lock().expect("not poisoned") = Some(Response::Busy {
            retry_after_ms: 2500,
        });
        let server = start(&pki.server_certs(), recorder.clone());

        let response = send_one(
            &client(&pki.edge_certs("fra-1")),
            server.addr,
            &id("fra-1", 3),
            &batch_file("fra-1", 3),
        )
        .await
        .expect("central answers");

        assert_eq!(
            response,
            Response::Busy {
                retry_after_ms: 2500
            }
        );
        assert_eq!(server.stats_when(|s| s.busy == 1).await.busy, 1);
        server.stop().await;
    })
    .await
    .expect("test finishes in time");
}

/// Releases every caller once `n` of them are waiting: passes only if the
/// server runs handlers for one connection's streams at the same time.
struct Rendezvous {
    barrier: tokio::sync::Barrier,
}

#[async_trait::async_trait]
impl BatchHandler for Rendezvous {
    async fn handle(&self, _edge: EdgeIdentity, batch_id: BatchId, _batch: Vec<u8>) -> Response {
        self.barrier.wait().await;
        Response::Ack { batch_id }
    }
}

#[tokio::test]
async fn streams_of_one_connection_are_handled_concurrently() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        let handler = Arc::new(Rendezvous {
            barrier: tokio::sync::Barrier::new(3),
        });
        let server = start(&pki.server_certs(), handler);
        let client = client(&pki.edge_certs("fra-1"));
        let conn = client
            .connect(server.addr, SERVER_NAME)
            .await
            .expect("connects");
        let batches: Vec<_> = (1..=3)
            .map(|seq| (id("fra-1", seq), batch_file("fra-1", seq)))
            .collect();

        let responses = futures_join_all(&client, &conn, &batches).await;

        for ((batch_id, _), response) in batches.iter().zip(responses) {
            assert_eq!(
                response.expect("sent"),
                Response::Ack {
                    batch_id: batch_id.clone()
                }
            );
        }
        server.stop().await;
    })
    .await
    .expect("test finishes in time");
}

async fn futures_join_all(
    client: &Client,
    conn: &quinn::Connection,
    batches: &[(BatchId, Vec<u8>)],
) -> Vec<Result<Response, SendError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (batch_id, batch)) in batches.iter().cloned().enumerate() {
        let (client, conn) = (client.clone(), conn.clone());
        tasks.spawn(async move { (index, client.send_batch(&conn, &batch_id, &batch).await) });
    }
    let mut results: Vec<_> = tasks.join_all().await;
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[tokio::test]
async fn shutdown_lets_the_running_handler_answer() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        // The handler answers only after shutdown has begun.
        struct Slow(CancellationToken);
        #[async_trait::async_trait]
        impl BatchHandler for Slow {
            async fn handle(&self, _: EdgeIdentity, batch_id: BatchId, _: Vec<u8>) -> Response {
                self.0.cancelled().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                Response::Ack { batch_id }
            }
        }
        let shutdown = CancellationToken::new();
        let endpoint = server_endpoint(bind_addr(), &pki.server_certs()).expect("binds");
        let addr = endpoint.local_addr().expect("bound");
        let task = tokio::spawn(
            Server::new(endpoint, Arc::new(Slow(shutdown.clone()))).serve(shutdown.clone()),
        );
        let client = client(&pki.edge_certs("fra-1"));
        let conn = client.connect(addr, SERVER_NAME).await.expect("connects");
        let sending = {
            let (client, conn) = (client.clone(), conn.clone());
            tokio::spawn(async move {
                client
                    .send_batch(&conn, &id("fra-1", 5), &batch_file("fra-1", 5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        shutdown.cancel();

        let response = sending
            .await
            .expect("no panic")
            .expect("answered before shutdown");
        assert_eq!(
            response,
            Response::Ack {
                batch_id: id("fra-1", 5)
            }
        );
        task.await.expect("server stops");
        // Then it closed the connection, saying why.
        match conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, server::CLOSE_SHUTDOWN);
                assert_eq!(&close.reason[..], server::SHUTDOWN_REASON);
            }
            other => panic!("expected an application close, got {other}"),
        }
    })
    .await
    .expect("test finishes in time");
}

/// The path central-ingest will take: the CA directory on disk, an edge
/// revoked with `CertDir::revoke`, central started from the files.
#[tokio::test]
async fn certificates_from_a_cert_dir_work_and_its_revocations_hold() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = hourglass_pki::CertDir::new(tmp.path().join("ca"));
        dir.init(now()).expect("init");
        let server = dir
            .issue_server(&[SERVER_NAME], now())
            .expect("server cert");
        let edge = |name: &str| {
            let issued = dir
                .issue_edge(&EdgeName::new(name).expect("valid"), now())
                .expect("edge cert");
            ClientCerts {
                cert_pem: issued.cert_pem,
                key_pem: issued.key_pem,
                ca_pem: dir.ca_cert_pem().expect("CA file"),
            }
        };
        let (kept, gone) = (edge("fra-1"), edge("ams-1"));
        dir.revoke(&EdgeName::new("ams-1").expect("valid"), now())
            .expect("revokes");
        let certs = ServerCerts {
            cert_pem: server.cert_pem,
            key_pem: server.key_pem,
            ca_pem: dir.ca_cert_pem().expect("CA file"),
            crl_pem: dir.crl_pem().expect("CRL file"),
        };
        let server = start(&certs, Arc::new(Recorder::default()));

        let ok = send_one(
            &client(&kept),
            server.addr,
            &id("fra-1", 1),
            &batch_file("fra-1", 1),
        )
        .await;
        assert_eq!(
            ok.expect("sent"),
            Response::Ack {
                batch_id: id("fra-1", 1)
            }
        );
        let refused = send_one(
            &client(&gone),
            server.addr,
            &id("ams-1", 1),
            &batch_file("ams-1", 1),
        )
        .await
        .expect_err("revoked on disk, refused on the wire");
        assert_eq!(
            refused.tls_alert(),
            Some(ALERT_CERTIFICATE_REVOKED),
            "{refused}"
        );
        server.stop().await;
    })
    .await
    .expect("test finishes in time");
}

/// Answers control requests from fixed data, noting who asked.
struct FixedControl {
    version: u64,
    blob: Vec<u8>,
    asked_by: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl hourglass_transport::ControlHandler for FixedControl {
    async fn sync(&self, edge: &EdgeIdentity, have_version: u64) -> ControlResponse {
        self.asked_by
            .lock()
            .expect("not poisoned")
            .push(edge.name.as_str().to_owned());
        if have_version == self.version {
            ControlResponse::Unchanged {
                version: self.version,
            }
        } else {
            ControlResponse::State {
                version: self.version,
                body: br#"{"version":7}"#.to_vec(),
            }
        }
    }

    async fn blob(&self, _edge: &EdgeIdentity, sha256: [u8; 32]) -> ControlResponse {
        if sha256 == [1; 32] {
            ControlResponse::Blob {
                bytes: self.blob.clone(),
            }
        } else {
            ControlResponse::Reject {
                reason: RejectReason::NotFound,
                message: "no such blob".into(),
            }
        }
    }
}

#[tokio::test]
async fn control_requests_share_the_connection_with_batches() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut pki = Pki::new();
        let certs = pki.server_certs();
        let edge = client(&pki.edge_certs("fra-1"));

        // Without a control handler: a clear refusal, and batches still go.
        let plain = start(&certs, Arc::new(Recorder::default()));
        let conn = edge
            .connect(plain.addr, SERVER_NAME)
            .await
            .expect("connects");
        let answer = edge
            .control(&conn, &ControlRequest::Sync { have_version: 0 })
            .await
            .expect("answered");
        assert!(
            matches!(
                answer,
                ControlResponse::Reject {
                    reason: RejectReason::Unsupported,
                    ..
                }
            ),
            "{answer:?}"
        );
        plain.stop().await;

        let endpoint = server_endpoint(bind_addr(), &certs).expect("server endpoint binds");
        let addr = endpoint.local_addr().expect("bound address");
        let control = Arc::new(FixedControl {
            version: 7,
            // Bigger than one QUIC packet, many times over.
            blob: (0..3_000_000u32).map(|i| (i % 251) as u8).collect(),
            asked_by: Mutex::default(),
        });
        let server =
            Server::new(endpoint, Arc::new(Recorder::default())).with_control(control.clone());
        let stats = server.stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        let conn = edge.connect(addr, SERVER_NAME).await.expect("connects");
        assert_eq!(
            edge.control(&conn, &ControlRequest::Sync { have_version: 0 })
                .await
                .expect("answered"),
            ControlResponse::State {
                version: 7,
                body: br#"{"version":7}"#.to_vec()
            }
        );
        assert_eq!(
            edge.control(&conn, &ControlRequest::Sync { have_version: 7 })
                .await
                .expect("answered"),
            ControlResponse::Unchanged { version: 7 }
        );
        assert_eq!(
            edge.control(&conn, &ControlRequest::Blob { sha256: [1; 32] })
                .await
                .expect("answered"),
            ControlResponse::Blob {
                bytes: control.blob.clone()
            }
        );
        assert!(matches!(
            edge.control(&conn, &ControlRequest::Blob { sha256: [2; 32] })
                .await
                .expect("answered"),
            ControlResponse::Reject {
                reason: RejectReason::NotFound,
                ..
            }
        ));
        // A batch on the same connection, between control requests.
        let response = edge
            .send_batch(&conn, &id("fra-1", 1), &batch_file("fra-1", 1))
            .await
            .expect("sent");
        assert_eq!(
            response,
            Response::Ack {
                batch_id: id("fra-1", 1)
            }
        );
        // The identity is the certificate's.
        assert_eq!(
            *control.asked_by.lock().expect("not poisoned"),
            ["fra-1", "fra-1"]
        );
        let snapshot = stats.snapshot();
        assert_eq!(
            (
                snapshot.control_syncs,
                snapshot.control_blobs,
                snapshot.control_refused
            ),
            (2, 1, 1)
        );
        shutdown.cancel();
        task.await.expect("server stops");
    })
    .await
    .expect("within the test timeout");
}
