//! CPU time and memory of a process, read from `/proc` (Linux). No `unsafe`: the clock tick is
//! Linux's fixed user-space `USER_HZ`.

use std::time::Duration;

/// `USER_HZ`: the unit of `utime`/`stime` in `/proc/PID/stat`. Linux fixes it at 100 for user
/// space on every architecture it supports, whatever the kernel's own `HZ`.
const USER_HZ: f64 = 100.0;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pid {
    /// The load generator itself.
    OwnProcess,
    /// The calling thread of the load generator.
    OwnThread,
    /// Another process (the server).
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::OwnProcess => "/proc/self".to_owned(),
            Pid::OwnThread => "/proc/thread-self".to_owned(),
            Pid::Other(pid) => format!("/proc/{pid}"),
        }
    }
}

/// User + system CPU time the process used so far.
pub(crate) fn cpu_time(pid: Pid) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir())).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

/// CPU time the calling thread used so far, in nanoseconds when `/proc/thread-self/schedstat`
/// is there (its first field is the time spent on a CPU), else in clock ticks from `stat`.
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_ascii_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .or_else(|| cpu_time(Pid::OwnThread))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) is
/// in parentheses and may contain spaces, so fields are counted after its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the comm come field 3 (state), 4, ... : utime is field 14, i.e. index 11 here.
    let mut fields = after_comm.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory (`VmRSS`) in KiB.
pub(crate) fn rss_kib(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir())).ok()?;
    status_field_kib(&status, "VmRSS:")
}

fn status_field_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Whether a process with this id exists (and can be read).
pub(crate) fn exists(pid: u32) -> bool {
    cpu_time(Pid::Other(pid)).is_some()
}

/// The soft limit on open files of this process, when `/proc/self/limits` tells it.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// Busy and total CPU time of the whole machine so far, in ticks (the `cpu` line of /proc/stat;
/// idle and iowait count as not busy).
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_ticks(stat.lines().next()?)
}

fn parse_machine_ticks(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.strip_prefix("cpu ")?.split_ascii_whitespace();
    // user nice system idle iowait irq softirq steal (guest time is included in user).
    let values: Vec<u64> = fields
        .by_ref()
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

/// The share of the machine's CPUs that was busy between two [`machine_ticks`] readings, in
/// percent of all cores.
pub(crate) fn busy_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let busy = after.0.checked_sub(before.0)?;
    let total = after.1.checked_sub(before.1)?;
    (total > 0).then(|| busy as f64 * 100.0 / total as f64)
}

/// The 1-minute load average.
pub(crate) fn load_average() -> Option<f64> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    loadavg.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (tokio worker (x)) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 \
                    3 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn machine_busy_share() {
        let line = "cpu  100 0 50 800 50 0 0 0 0 0";
        assert_eq!(parse_machine_ticks(line), Some((150, 1000)));
        assert_eq!(busy_percent((150, 1000), (300, 1200)), Some(75.0));
        assert!(machine_ticks().is_some());
    }

    #[test]
    fn reads_own_process() {
        assert!(cpu_time(Pid::OwnProcess).is_some());
        assert!(cpu_time(Pid::OwnThread).is_some());
        // Spin until the thread's CPU clock moves: a thread that works must see it move.
        let before = thread_cpu_time().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut after = before;
        while after == before && std::time::Instant::now() < deadline {
            after = thread_cpu_time().unwrap();
        }
        assert!(after > before, "the thread's CPU time never moved");
        assert!(rss_kib(Pid::OwnProcess).is_some_and(|kib| kib > 0));
        assert!(open_files_limit().is_some());
        let status = "Name:\tx\nVmRSS:\t   12345 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS:"), Some(12345));
    }
}
