//! The API boundary's one error type. Every handler failure becomes an `ApiError` whose message
//! is a lower-case sentence naming the object; `http.rs` maps it to a status code in exactly one
//! place. Lower layers keep their own enums and convert into this one.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The request cannot be understood or asks for something this plugin refuses (400).
    BadRequest(String),
    /// The named pod or container is not known here (404).
    NotFound(String),
    /// The request contradicts what already happened, such as a create after a delete (409).
    Conflict(String),
    /// The body is larger than the plugin accepts (413).
    TooLarge(String),
    /// The plugin could not do its part: disk, spawn, signal (500).
    Internal(String),
}

impl ApiError {
    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::TooLarge(m)
            | ApiError::Internal(m) => m,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}
