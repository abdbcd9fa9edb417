//! Sidecast's HTTP handlers, a file per group of routes: the page, the demo login, `POST /api/`, `POST /api/rooms`,
//! and the health endpoints. [`crate::Sidecast`]'s `*_routes` methods mount them.

pub(crate) mod api;
pub(crate) mod caller;
pub mod fuzzing;
pub(crate) mod health;
pub(crate) mod login;
pub(crate) mod page;
pub(crate) mod presence;
pub(crate) mod rooms;
