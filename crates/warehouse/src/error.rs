//! The error type of every warehouse operation.

/// What went wrong talking to (or preparing to talk to) the warehouse.
///
/// Display gives this layer's message only; the ClickHouse error is the
/// [`source`](std::error::Error::source) (print with `{:#}` in `anyhow`).
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// A name that would be put into SQL as an identifier is not a plain one.
    #[error(
        "invalid {what} {value:?}: must match ^[A-Za-z_][A-Za-z0-9_]*$ and be at most {max} characters",
        max = crate::ident::MAX_IDENTIFIER_LEN
    )]
    InvalidIdentifier { what: &'static str, value: String },

    /// The configured server URL cannot be used.
    #[error("invalid warehouse url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },

    /// An event time is outside what the warehouse stores (whole seconds,
    /// 1970-01-01T00:00:00Z ..= 2099-12-31T23:59:59Z). Nothing of the batch
    /// was sent.
    #[error(
        "batch {batch_id}: event {index} has {field} = {value_ms} ms, outside the stored range \
         (1970-01-01T00:00:00Z ..= 2099-12-31T23:59:59Z); nothing of the batch was inserted"
    )]
    TimestampOutOfRange {
        batch_id: String,
        index: usize,
        field: &'static str,
        value_ms: i64,
    },

    /// The server (or the connection to it) failed an operation.
    #[error("{context}")]
    ClickHouse {
        context: String,
        #[source]
        source: clickhouse::error::Error,
    },
}

impl WarehouseError {
    /// Wraps a client error with what we were doing.
    pub(crate) fn clickhouse(
        context: impl Into<String>,
    ) -> impl FnOnce(clickhouse::error::Error) -> Self {
        let context = context.into();
        move |source| WarehouseError::ClickHouse { context, source }
    }
}
