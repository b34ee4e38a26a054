//! A test stand-in for central's receiver: a real QUIC server with mTLS
//! (the transport crate's server side) that keeps every batch it is sent,
//! deduplicated by batch id as central does, and counts re-sends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hourglass_model::{Batch, BatchId, decode_batch};
use hourglass_pki::{CertDir, EdgeIdentity};
use hourglass_transport::{BatchHandler, Response, ServerCerts, server_endpoint};
use tokio_util::sync::CancellationToken;

/// Name central's certificate carries in these tests.
pub const SERVER_NAME: &str = "central.hourglass.test";

#[derive(Default)]
pub struct Received {
    pub batches: Mutex<BTreeMap<BatchId, Batch>>,
    pub resent: AtomicU64,
}

struct Keep(Arc<Received>);

#[async_trait::async_trait]
impl BatchHandler for Keep {
    async fn handle(&self, _edge: EdgeIdentity, batch_id: BatchId, bytes: Vec<u8>) -> Response {
        let batch = match decode_batch(&bytes) {
            Ok(b) => b,
            Err(e) => {
                return Response::Reject {
                    reason: hourglass_transport::RejectReason::InvalidBatch,
                    message: e.to_string(),
                };
            }
        };
        let mut batches = self.0.batches.lock().unwrap();
        if batches.insert(batch_id.clone(), batch).is_some() {
            self.0.resent.fetch_add(1, Ordering::Relaxed);
        }
        Response::Ack { batch_id }
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Received>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Creates the project CA in `certs` (if missing) and central's pair.
pub fn server_certs(certs: &Path) -> ServerCerts {
    let dir = CertDir::new(certs);
    if !dir.ca_cert_path().exists() {
        dir.init(SystemTime::now()).unwrap();
    }
    let issued = dir.issue_server(&[SERVER_NAME], SystemTime::now()).unwrap();
    ServerCerts {
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        ca_pem: dir.ca_cert_pem().unwrap(),
        crl_pem: dir.crl_pem().unwrap(),
    }
}

impl Receiver {
    /// Starts on `addr` (use port 0 for a free one) in a thread of its own.
    pub fn start(certs: &ServerCerts, addr: SocketAddr) -> Receiver {
        let received = Arc::new(Received::default());
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let certs = certs.clone();
        let handler = Keep(received.clone());
        let token = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let endpoint = server_endpoint(addr, &certs).unwrap();
                tx.send(endpoint.local_addr().unwrap()).unwrap();
                hourglass_transport::serve(endpoint, Arc::new(handler), token).await;
            });
        });
        let addr = rx.recv().expect("receiver started");
        Receiver {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Every event of every batch received, once per batch id.
    pub fn events(&self) -> Vec<hourglass_model::Event> {
        let batches = self.received.batches.lock().unwrap();
        batches.values().flat_map(|b| b.events.clone()).collect()
    }

    pub fn raw_hits(&self) -> usize {
        let batches = self.received.batches.lock().unwrap();
        batches.values().map(|b| b.raw_hits.len()).sum()
    }

    pub fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
