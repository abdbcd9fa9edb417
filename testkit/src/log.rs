//! [`CapturedLog`]: what the code under test logs, kept as text for assertions ("an outage is
//! logged once", "the password is not in the log").

use std::io;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Everything a `tracing` subscriber made by [`CapturedLog::subscriber`] formats, as plain text
/// (no colours). Clones share the text.
///
/// A test that captures with a thread-local subscriber ([`CapturedLog::set_default`]) belongs in
/// a test binary of its own: tracing caches per-callsite interest process-wide, and tests
/// running in parallel threads without a subscriber can make it miss events.
#[derive(Debug, Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// A subscriber that formats what `filter` (a `RUST_LOG`-style filter, such as `info` or
    /// `sidecast_example_nats=info`) lets through into this capture.
    pub fn subscriber(&self, filter: &str) -> impl tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(self.clone())
            .finish()
    }

    /// A new capture of what is logged on this thread while the guard lives. On a
    /// current-thread runtime that includes the tasks the test spawns.
    pub fn set_default(filter: &str) -> (Self, DefaultGuard) {
        let captured = Self::default();
        let guard = tracing::subscriber::set_default(captured.subscriber(filter));
        (captured, guard)
    }

    /// The capture of everything this test process logs, from every thread (runtime threads,
    /// a client library's own I/O threads), through the global default subscriber. The first
    /// call sets it up with `filter`; later calls return the same capture. Call it before
    /// creating what logs.
    pub fn global(filter: &str) -> &'static Self {
        static GLOBAL: OnceLock<CapturedLog> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let captured = Self::default();
            let _ = tracing::subscriber::set_global_default(captured.subscriber(filter));
            captured
        })
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// How often `needle` occurs in what was captured so far.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLog {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}
