//! Counters and samples of one load-generator thread, merged into a [`Report`] at the end.
//!
//! Each worker thread owns its [`Stats`] outright (no atomics on the hot path); the driver
//! merges them once the threads are joined. Latency samples are kept whole (microseconds,
//! `u32`) and sorted once for the percentiles: a 1000-client, 10 pps, 60 s run is 600 k
//! samples, a few MB.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Most RTT samples kept per thread; beyond this, replies are still counted but not timed.
const MAX_RTT_SAMPLES: usize = 4_000_000;

/// What one worker thread saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub hs_started: u64,
    pub hs_ok: u64,
    pub hs_failed: u64,
    /// Handshake latencies of completed handshakes, microseconds.
    pub hs_us: Vec<u32>,
    /// Offsets from the run origin of the first start and last completion, microseconds.
    pub first_start_us: Option<u64>,
    pub last_done_us: Option<u64>,
    pub sent_v4: u64,
    pub sent_v6: u64,
    pub recv_v4: u64,
    pub recv_v6: u64,
    /// Echo round trips, microseconds.
    pub rtt_us: Vec<u32>,
    /// Offsets of the first data packet sent and the last one, microseconds.
    pub first_data_us: Option<u64>,
    pub last_data_us: Option<u64>,
    /// Clients that received at least one IPv4 and one IPv6 echo reply (counted at the end).
    pub clients_replied: u64,
    /// Dropped or refused things, by reason (also handshake failures by close reason).
    pub drops: BTreeMap<String, u64>,
}

impl Stats {
    pub fn drop(&mut self, reason: &str) {
        match self.drops.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                self.drops.insert(reason.to_string(), 1);
            }
        }
    }

    pub fn rtt(&mut self, us: u64) {
        if self.rtt_us.len() < MAX_RTT_SAMPLES {
            self.rtt_us.push(u32::try_from(us).unwrap_or(u32::MAX));
        }
    }

    pub fn data_sent(&mut self, v6: bool, at_us: u64) {
        if v6 {
            self.sent_v6 += 1;
        } else {
            self.sent_v4 += 1;
        }
        self.first_data_us = Some(self.first_data_us.map_or(at_us, |t| t.min(at_us)));
        self.last_data_us = Some(self.last_data_us.map_or(at_us, |t| t.max(at_us)));
    }

    pub fn merge(&mut self, o: Stats) {
        self.hs_started += o.hs_started;
        self.hs_ok += o.hs_ok;
        self.hs_failed += o.hs_failed;
        self.hs_us.extend(o.hs_us);
        self.first_start_us = min_opt(self.first_start_us, o.first_start_us);
        self.last_done_us = max_opt(self.last_done_us, o.last_done_us);
        self.sent_v4 += o.sent_v4;
        self.sent_v6 += o.sent_v6;
        self.recv_v4 += o.recv_v4;
        self.recv_v6 += o.recv_v6;
        self.rtt_us.extend(o.rtt_us);
        self.first_data_us = min_opt(self.first_data_us, o.first_data_us);
        self.last_data_us = max_opt(self.last_data_us, o.last_data_us);
        self.clients_replied += o.clients_replied;
        for (k, v) in o.drops {
            *self.drops.entry(k).or_insert(0) += v;
        }
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest-rank; `None` when empty.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Report {
    pub clients: u32,
    pub hs_ok: u64,
    pub hs_failed: u64,
    /// Started but neither completed nor failed when the run ended.
    pub hs_incomplete: u64,
    /// Never started (the run ended first).
    pub not_started: u64,
    pub hs_p50: Option<Duration>,
    pub hs_p99: Option<Duration>,
    pub hs_max: Option<Duration>,
    /// Completed handshakes per second, first start to last completion.
    pub hs_per_s: f64,
    pub sent: u64,
    pub sent_v6: u64,
    pub received: u64,
    pub received_v6: u64,
    /// Clients with at least one IPv4 and one IPv6 echo reply.
    pub clients_replied: u64,
    pub loss_pct: f64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub rtt_p50: Option<Duration>,
    pub rtt_p99: Option<Duration>,
    pub drops: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// CPU time (user + system) the load generator itself used, if known.
    pub self_cpu: Option<Duration>,
}

impl Report {
    /// Builds the report from merged stats. `data_window` is the span data was sent over plus
    /// the drain, for the packet rates.
    pub fn new(clients: u32, mut s: Stats, elapsed: Duration, hs_incomplete: u64) -> Report {
        s.hs_us.sort_unstable();
        s.rtt_us.sort_unstable();
        let us = |v: Option<u32>| v.map(|v| Duration::from_micros(v.into()));
        let hs_span = match (s.first_start_us, s.last_done_us) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
            _ => 0.0,
        };
        let data_span = match (s.first_data_us, s.last_data_us) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
            _ => 0.0,
        };
        let sent = s.sent_v4 + s.sent_v6;
        let received = s.recv_v4 + s.recv_v6;
        let rate = |n: u64, span: f64| if span > 0.0 { n as f64 / span } else { 0.0 };
        Report {
            clients,
            hs_ok: s.hs_ok,
            hs_failed: s.hs_failed,
            hs_incomplete,
            not_started: u64::from(clients).saturating_sub(s.hs_started),
            hs_p50: us(percentile(&s.hs_us, 50.0)),
            hs_p99: us(percentile(&s.hs_us, 99.0)),
            hs_max: us(s.hs_us.last().copied()),
            hs_per_s: rate(s.hs_ok, hs_span),
            sent,
            sent_v6: s.sent_v6,
            received,
            received_v6: s.recv_v6,
            clients_replied: s.clients_replied,
            loss_pct: if sent > 0 {
                100.0 * sent.saturating_sub(received) as f64 / sent as f64
            } else {
                0.0
            },
            tx_pps: rate(sent, data_span),
            rx_pps: rate(received, data_span),
            rtt_p50: us(percentile(&s.rtt_us, 50.0)),
            rtt_p99: us(percentile(&s.rtt_us, 99.0)),
            drops: s.drops,
            elapsed,
            self_cpu: None,
        }
    }

    /// One `key=value` line for scripts (`RESULT ...`); durations in milliseconds.
    pub fn machine_line(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or("nan".to_string(), |d| {
                format!("{:.2}", d.as_secs_f64() * 1e3)
            })
        };
        let drops: u64 = self.drops.values().sum();
        format!(
            "RESULT clients={} hs_ok={} hs_failed={} hs_incomplete={} not_started={} \
             hs_per_s={:.1} hs_p50_ms={} hs_p99_ms={} sent={} sent_v6={} received={} \
             received_v6={} clients_replied={} loss_pct={:.3} tx_pps={:.0} rx_pps={:.0} \
             rtt_p50_ms={} rtt_p99_ms={} drops={} lg_cpu_s={}",
            self.clients,
            self.hs_ok,
            self.hs_failed,
            self.hs_incomplete,
            self.not_started,
            self.hs_per_s,
            ms(self.hs_p50),
            ms(self.hs_p99),
            self.sent,
            self.sent_v6,
            self.received,
            self.received_v6,
            self.clients_replied,
            self.loss_pct,
            self.tx_pps,
            self.rx_pps,
            ms(self.rtt_p50),
            ms(self.rtt_p99),
            drops,
            self.self_cpu
                .map_or("nan".to_string(), |d| format!("{:.2}", d.as_secs_f64()))
        )
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "handshakes: completed {} of {}, failed {}, incomplete {}, not started {}",
            self.hs_ok, self.clients, self.hs_failed, self.hs_incomplete, self.not_started
        )?;
        writeln!(
            f,
            "handshake latency: p50 {}, p99 {}, max {}; rate {:.1}/s",
            ms(self.hs_p50),
            ms(self.hs_p99),
            ms(self.hs_max),
            self.hs_per_s
        )?;
        writeln!(
            f,
            "data: sent {} (IPv6 {}), echo replies {} (IPv6 {}), loss {:.2} %; \
             {} clients got IPv4 and IPv6 replies",
            self.sent,
            self.sent_v6,
            self.received,
            self.received_v6,
            self.loss_pct,
            self.clients_replied
        )?;
        writeln!(
            f,
            "data rate: sent {:.0} pps, received {:.0} pps; echo rtt p50 {}, p99 {}",
            self.tx_pps,
            self.rx_pps,
            ms(self.rtt_p50),
            ms(self.rtt_p99)
        )?;
        if self.drops.is_empty() {
            writeln!(f, "drops: none")?;
        } else {
            let list: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "drops: {}", list.join(" "))?;
        }
        write!(f, "elapsed: {:.1} s", self.elapsed.as_secs_f64())?;
        if let Some(cpu) = self.self_cpu {
            write!(f, ", load generator CPU {:.2} s", cpu.as_secs_f64())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn merge_and_report() {
        let mut a = Stats {
            hs_started: 2,
            hs_ok: 2,
            hs_us: vec![3000, 1000],
            first_start_us: Some(0),
            last_done_us: Some(1_000_000),
            ..Default::default()
        };
        a.data_sent(false, 1_000_000);
        a.data_sent(true, 2_000_000);
        a.recv_v4 = 1;
        a.drop("x");
        let mut b = Stats {
            hs_started: 2,
            hs_ok: 1,
            hs_failed: 1,
            hs_us: vec![2000],
            first_start_us: Some(500_000),
            last_done_us: Some(2_000_000),
            ..Default::default()
        };
        b.drop("x");
        b.drop("y");
        a.merge(b);
        let r = Report::new(5, a, Duration::from_secs(3), 0);
        assert_eq!(r.hs_ok, 3);
        assert_eq!(r.hs_failed, 1);
        assert_eq!(r.not_started, 1);
        assert_eq!(r.hs_p50, Some(Duration::from_millis(2)));
        assert_eq!(r.hs_max, Some(Duration::from_millis(3)));
        assert!((r.hs_per_s - 1.5).abs() < 1e-9);
        assert_eq!(r.sent, 2);
        assert_eq!(r.received, 1);
        assert!((r.loss_pct - 50.0).abs() < 1e-9);
        assert_eq!(r.drops.get("x"), Some(&2));
        assert_eq!(r.drops.get("y"), Some(&1));
        let line = r.machine_line();
        assert!(
            line.starts_with("RESULT clients=5 hs_ok=3 hs_failed=1"),
            "{line}"
        );
        assert!(line.contains("drops=3"), "{line}");
    }
}
