//! The shapes the Admin UI reads: a socket as socket.io's `instrument()` serializes it, and
//! dates as JavaScript's `Date` travels in JSON (an ISO 8601 string).

use serde::Serialize;
use serde_json::{Value, json};

use crate::presence::view::SocketRecord;

/// A socket as the UI lists it (`all_sockets`, `socket_connected`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SerializedSocket {
    pub(crate) id: String,
    /// The Engine.IO connection's id in socket.io (12 characters); Sidecast's sockets have one
    /// connection each, so it is the socket id's first 12.
    pub(crate) client_id: String,
    pub(crate) transport: String,
    pub(crate) nsp: String,
    /// `socket.data` in socket.io; here the user and the `info` the auth policy gave.
    pub(crate) data: Value,
    pub(crate) handshake: Value,
    pub(crate) rooms: Vec<String>,
}

impl SerializedSocket {
    /// The UI's view of a socket of the cluster view.
    pub(crate) fn from_record(record: &SocketRecord) -> Self {
        let mut data = serde_json::Map::new();
        if let Some(user) = &record.user {
            data.insert("user".to_owned(), Value::String(user.clone()));
        }
        if let Some(info) = &record.info {
            data.insert("info".to_owned(), info.clone());
        }
        data.insert("node".to_owned(), Value::String(record.node.clone()));
        let handshake = record.handshake.clone().unwrap_or_else(|| {
            // The UI reads these fields; a view without handshakes still gets a listing.
            json!({
                "address": "",
                "headers": {},
                "query": {},
                "issued": record.connected_at_ms,
                "secure": false,
                "time": iso_date(record.connected_at_ms),
                "url": "",
                "xdomain": false,
            })
        });
        // Every socket is in the room of its own id (in Sidecast as in socket.io, which lists
        // it); the view may leave it out as implied.
        let mut rooms: Vec<String> = record.rooms.iter().cloned().collect();
        if !record.rooms.contains(&record.sid) {
            rooms.insert(0, record.sid.clone());
        }
        Self {
            id: record.sid.clone(),
            client_id: record.sid.chars().take(12).collect(),
            transport: record.transport.clone(),
            nsp: record.nsp.clone(),
            data: Value::Object(data),
            handshake,
            rooms,
        }
    }
}

/// `ms` since the Unix epoch as JavaScript's `Date.prototype.toJSON` writes it:
/// `2026-12-07T08:30:00.000Z`.
pub(crate) fn iso_date(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Now, as [`iso_date`] writes it.
pub(crate) fn now_iso() -> String {
    iso_date(sidecast_core::envelope::now_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_javascript_does() {
        assert_eq!(iso_date(0), "1970-01-01T00:00:00.000Z");
        // new Date(1796628600123).toJSON()
        assert_eq!(iso_date(1_796_628_600_123), "2026-12-07T07:30:00.123Z");
        assert_eq!(iso_date(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
