use std::fmt;

/// Why a record (or a batch) could not be processed. weir then commits nothing of the batch and
/// reports the message with the record's topic, partition, offset and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub(crate) record: Option<u32>,
    pub(crate) message: String,
}

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self { record: None, message: message.to_string() }
    }

    /// Blames record `index` of the batch (for `#[processor(batch)]`; per-record processors
    /// blame the record at hand without this).
    pub fn at(mut self, index: usize) -> Self {
        self.record = Some(index as u32);
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Self::msg(e)
    }
}
