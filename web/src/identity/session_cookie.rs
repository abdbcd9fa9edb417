//! Session cookie values that survive every common client's cookie handling.
//!
//! The signed session cookie carries standard base64 (`+`, `/`, `=`). Browsers and Node pass such
//! a value through, but Python's `http.cookies` (aiohttp's cookie jar, which python-socketio's
//! `AsyncClient` uses on its websocket path) wraps a value holding `=` or `/` in double quotes,
//! and some decoders read `+` as a space. So the session cookie leaves the server with every byte
//! outside `[A-Za-z0-9-._~]` percent-encoded (the cookie parsers on the way back in decode it),
//! and a value that comes back wrapped in double quotes (RFC 6265 allows `DQUOTE value DQUOTE`)
//! is unwrapped before the session layer reads it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The middleware: `name` is the session cookie's name.
pub(crate) async fn session_cookie_values(
    State(name): State<Arc<str>>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers_mut();
    let cookies: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if cookies.iter().any(|v| needs_unquoting(v.as_bytes(), &name)) {
        headers.remove(header::COOKIE);
        for value in cookies {
            let fixed = match value.to_str() {
                Ok(text) => HeaderValue::from_str(&unquote_cookie(text, &name)).unwrap_or(value),
                Err(_) => value,
            };
            headers.append(header::COOKIE, fixed);
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if !set.is_empty() {
        headers.remove(header::SET_COOKIE);
        for value in set {
            let fixed = match value.to_str() {
                Ok(text) => HeaderValue::from_str(&encode_set_cookie(text, &name)).unwrap_or(value),
                Err(_) => value,
            };
            headers.append(header::SET_COOKIE, fixed);
        }
    }
    response
}

/// Whether a `Cookie` header holds the cookie `name` with a quoted value.
pub(crate) fn needs_unquoting(header: &[u8], name: &str) -> bool {
    let Ok(text) = std::str::from_utf8(header) else {
        return false;
    };
    text.split(';').any(|pair| {
        pair.trim()
            .split_once('=')
            .is_some_and(|(n, v)| n.trim() == name && is_quoted(v.trim()))
    })
}

fn is_quoted(value: &str) -> bool {
    value.len() >= 2 && value.starts_with('"') && value.ends_with('"')
}

/// The `Cookie` header `header` with the value of the cookie `name` out of its double quotes.
pub(crate) fn unquote_cookie(header: &str, name: &str) -> String {
    header
        .split(';')
        .map(|pair| match pair.trim().split_once('=') {
            Some((n, v)) if n.trim() == name && is_quoted(v.trim()) => {
                let v = v.trim();
                format!("{}={}", n.trim(), &v[1..v.len() - 1])
            }
            _ => pair.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A `Set-Cookie` header with the value of the cookie `name` percent-encoded strictly; other
/// cookies and the attributes unchanged.
pub(crate) fn encode_set_cookie(header: &str, name: &str) -> String {
    let (pair, attributes) = match header.split_once(';') {
        Some((pair, rest)) => (pair, Some(rest)),
        None => (header, None),
    };
    let Some((n, v)) = pair.split_once('=') else {
        return header.to_owned();
    };
    if n.trim() != name {
        return header.to_owned();
    }
    // Undo the encoding the session layer may have applied, then apply the strict one.
    let raw = percent_decode(v.trim());
    let mut out = format!("{}={}", n.trim(), strict_encode(&raw));
    if let Some(attributes) = attributes {
        out.push(';');
        out.push_str(attributes);
    }
    out
}

/// Percent-encodes every byte outside `[A-Za-z0-9-._~]`.
pub(crate) fn strict_encode(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() + value.len() / 4);
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; anything else (including `+`) is kept as it is.
fn percent_decode(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_values_use_only_unreserved_characters() {
        let out = encode_set_cookie(
            "sidecast.session=ab+c/d=%3D; Path=/; HttpOnly",
            "sidecast.session",
        );
        assert_eq!(out, "sidecast.session=ab%2Bc%2Fd%3D%3D; Path=/; HttpOnly");
        assert_eq!(
            encode_set_cookie("other=a+b", "sidecast.session"),
            "other=a+b"
        );
        assert_eq!(percent_decode("ab%2Bc%2Fd%3D%3D"), b"ab+c/d==");
        assert_eq!(percent_decode("a%zz%4"), b"a%zz%4");
    }

    #[test]
    fn quoted_session_values_are_unwrapped() {
        let h = "a=1; sidecast.session=\"x+y==\"; b=\"2\"";
        assert!(needs_unquoting(h.as_bytes(), "sidecast.session"));
        assert_eq!(
            unquote_cookie(h, "sidecast.session"),
            "a=1; sidecast.session=x+y==; b=\"2\""
        );
        assert!(!needs_unquoting(b"sidecast.session=x", "sidecast.session"));
    }
}
