//! Request methods.

use std::fmt;

/// An HTTP request method. The common ones are variants; any other token is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// `CONNECT`
    Connect,
    /// `TRACE`
    Trace,
    /// Any other method token, as sent (methods are case-sensitive).
    Other(Box<str>),
}

impl Method {
    /// `GET`, as a constant for route tables.
    pub const GET: Method = Method::Get;
    /// `HEAD`
    pub const HEAD: Method = Method::Head;
    /// `POST`
    pub const POST: Method = Method::Post;
    /// `PUT`
    pub const PUT: Method = Method::Put;
    /// `DELETE`
    pub const DELETE: Method = Method::Delete;
    /// `PATCH`
    pub const PATCH: Method = Method::Patch;
    /// `OPTIONS`
    pub const OPTIONS: Method = Method::Options;

    /// Parses a method token as it appears on the request line.
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "CONNECT" => Method::Connect,
            "TRACE" => Method::Trace,
            other => Method::Other(other.into()),
        }
    }

    /// The token as it appears on the request line (`"GET"`); an [`Method::Other`] token as
    /// sent, case kept.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other(token) => token,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
