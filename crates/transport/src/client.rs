//! The edge side: one bidirectional stream per batch on a connection to
//! central. Retries, backoff and fail-over belong to the caller (the edge's
//! shipper); this only says what happened.

use std::net::SocketAddr;

use hourglass_model::BatchId;
use quinn::{ConnectError, Connection, ConnectionError, ReadError, ReadToEndError, WriteError};

use crate::codec::{
    ControlRequest, ControlResponse, EncodeError, FrameError, MAX_CONTROL_RESPONSE_LEN,
    MAX_RESPONSE_LEN, Response, decode_control_response, decode_response, encode_control_request,
    encode_request_head,
};

/// Why a batch could not be sent or its answer not read. Any of these
/// leaves the batch unacknowledged: keep it and send it again later
/// (central deduplicates by batch id).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("cannot connect to central at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: ConnectError,
    },
    #[error("connection to central lost: {source}{}", connection_hint(source))]
    Connection {
        #[source]
        source: ConnectionError,
    },
    #[error("central reset the stream (code {code}) without answering; send the batch again later")]
    Reset { code: u64 },
    #[error("stream to central failed: {0}")]
    Stream(String),
    #[error("central's response is not valid: {0}; are edge and central on the same release?")]
    BadResponse(#[from] FrameError),
    #[error(
        "central acknowledged batch {acked} in answer to batch {sent}; not treating {sent} as delivered"
    )]
    AckMismatch { sent: BatchId, acked: BatchId },
}

impl SendError {
    /// The TLS alert central sent, when the connection died because central
    /// refused the edge's certificate (unknown CA, revoked, expired…).
    pub fn tls_alert(&self) -> Option<u8> {
        match self {
            SendError::Connection { source } => tls_alert(source),
            _ => None,
        }
    }
}

fn tls_alert(error: &ConnectionError) -> Option<u8> {
    let code = match error {
        ConnectionError::ConnectionClosed(close) => u64::from(close.error_code),
        ConnectionError::TransportError(error) => u64::from(error.code),
        _ => return None,
    };
    // QUIC carries TLS alerts as transport error codes 0x100 + alert.
    u8::try_from(code.checked_sub(0x100)?).ok()
}

fn connection_hint(error: &ConnectionError) -> &'static str {
    if tls_alert(error).is_some() {
        "; the TLS handshake failed: check that this edge's certificate was issued by the project CA and is neither revoked nor expired, and that the CA file is central's"
    } else if matches!(error, ConnectionError::TimedOut) {
        "; central stopped answering: check the address, the network and that central-ingest runs"
    } else {
        ""
    }
}

impl From<ConnectionError> for SendError {
    fn from(source: ConnectionError) -> Self {
        SendError::Connection { source }
    }
}

impl From<WriteError> for SendError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::ConnectionLost(source) => SendError::Connection { source },
            WriteError::Stopped(code) => SendError::Reset {
                code: code.into_inner(),
            },
            other => SendError::Stream(other.to_string()),
        }
    }
}

impl From<ReadToEndError> for SendError {
    fn from(error: ReadToEndError) -> Self {
        match error {
            ReadToEndError::Read(ReadError::ConnectionLost(source)) => {
                SendError::Connection { source }
            }
            ReadToEndError::Read(ReadError::Reset(code)) => SendError::Reset {
                code: code.into_inner(),
            },
            ReadToEndError::TooLong => SendError::Stream(format!(
                "central's answer is over {MAX_RESPONSE_LEN} bytes, longer than any valid response; are edge and central on the same release?"
            )),
            other => SendError::Stream(other.to_string()),
        }
    }
}

/// Sends batches to central over an endpoint made by
/// [`crate::client_endpoint`].
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: quinn::Endpoint,
}

impl Client {
    pub fn new(endpoint: quinn::Endpoint) -> Self {
        Client { endpoint }
    }

    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Opens a connection to central at `addr`, checking its certificate
    /// against `server_name`. With TLS 1.3 central checks the edge's
    /// certificate after this returns: a refused edge sees
    /// [`SendError::Connection`] (with [`SendError::tls_alert`]) on its
    /// first send.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, SendError> {
        let connecting = self
            .endpoint
            .connect(addr, server_name)
            .map_err(|source| SendError::Connect { addr, source })?;
        Ok(connecting.await?)
    }

    /// Sends one batch file on a new stream of `conn` and waits for
    /// central's answer. `Ok` holds central's verdict (Ack, Busy or
    /// Reject); an Ack is checked to be for this batch.
    pub async fn send_batch(
        &self,
        conn: &Connection,
        batch_id: &BatchId,
        batch: &[u8],
    ) -> Result<Response, SendError> {
        let head = encode_request_head(batch_id, batch)?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let written = async {
            send.write_all(&head).await?;
            send.write_all(batch).await?;
            send.finish().map_err(WriteError::from)
        }
        .await;
        match written {
            Ok(()) => {}
            // Central stops reading a request it refuses, and answers why:
            // read that answer rather than report a bare stop.
            Err(WriteError::Stopped(_)) => {}
            Err(other) => return Err(other.into()),
        }
        let bytes = recv.read_to_end(MAX_RESPONSE_LEN).await?;
        let response = decode_response(&bytes)?;
        if let Response::Ack { batch_id: acked } = &response
            && acked != batch_id
        {
            return Err(SendError::AckMismatch {
                sent: batch_id.clone(),
                acked: acked.clone(),
            });
        }
        Ok(response)
    }

    /// Sends one control request on a new stream of `conn` and reads
    /// central's answer (bounded by the largest control response).
    pub async fn control(
        &self,
        conn: &Connection,
        request: &ControlRequest,
    ) -> Result<ControlResponse, SendError> {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&encode_control_request(request)).await?;
        send.finish().map_err(WriteError::from)?;
        let bytes = recv.read_to_end(MAX_CONTROL_RESPONSE_LEN).await?;
        Ok(decode_control_response(&bytes)?)
    }
}
