//! Room names and room operations: the rules every entry point (bus, HTTP, CLI, emitters) applies
//! before an operation is published, and every node applies again before it acts.
//!
//! A room name is 1 to [`MAX_ROOM_LEN`] bytes of UTF-8 without control characters; one operation
//! names at most [`MAX_ROOMS`] rooms in each of its lists. Every socket is in the room
//! `user:<name>` of the user it authenticated as, and in the room named by its own socket id (as
//! in Socket.IO), so one socket can be addressed like any room.

/// The longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 256;

/// The most rooms one list of an operation (or of an event's `rooms`) may name.
pub const MAX_ROOMS: usize = 100;

/// The longest disconnect reason, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// The event a socket receives just before it is disconnected with a reason; its one argument is
/// the reason text.
pub const DISCONNECT_REASON_EVENT: &str = "sidecast:disconnect";

/// Why a list of room names is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRoom {
    /// An empty name.
    #[error("room names must not be empty")]
    Empty,
    /// A name longer than [`MAX_ROOM_LEN`].
    #[error("room name of {0} bytes is longer than {MAX_ROOM_LEN} bytes")]
    TooLong(usize),
    /// A name with a control character.
    #[error("room name {0:?} contains a control character")]
    ControlCharacter(String),
    /// More than [`MAX_ROOMS`] names.
    #[error("{0} rooms in one list; at most {MAX_ROOMS}")]
    TooMany(usize),
}

/// Checks one room name.
pub fn validate_room(name: &str) -> Result<(), InvalidRoom> {
    if name.is_empty() {
        return Err(InvalidRoom::Empty);
    }
    if name.len() > MAX_ROOM_LEN {
        return Err(InvalidRoom::TooLong(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidRoom::ControlCharacter(name.to_owned()));
    }
    Ok(())
}

/// Checks a list of room names: at most [`MAX_ROOMS`], each valid.
pub fn validate_rooms(names: &[String]) -> Result<(), InvalidRoom> {
    if names.len() > MAX_ROOMS {
        return Err(InvalidRoom::TooMany(names.len()));
    }
    names.iter().try_for_each(|n| validate_room(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        for ok in [
            "game:1",
            "user:Gonzalo",
            "a b",
            "ñandú",
            &"x".repeat(MAX_ROOM_LEN),
        ] {
            assert_eq!(validate_room(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_room(""), Err(InvalidRoom::Empty));
        assert_eq!(
            validate_room(&"x".repeat(MAX_ROOM_LEN + 1)),
            Err(InvalidRoom::TooLong(MAX_ROOM_LEN + 1))
        );
        assert!(matches!(
            validate_room("a\nb"),
            Err(InvalidRoom::ControlCharacter(_))
        ));
        let many: Vec<String> = (0..=MAX_ROOMS).map(|i| format!("r{i}")).collect();
        assert_eq!(
            validate_rooms(&many),
            Err(InvalidRoom::TooMany(MAX_ROOMS + 1))
        );
        assert_eq!(validate_rooms(&many[..MAX_ROOMS]), Ok(()));
    }
}
