//! Timestamps as OpenVPN prints them in the status output: local time `YYYY-MM-DD HH:MM:SS`
//! next to the unix seconds.
//!
//! A [`Stamp`] carries the unix time and the UTC offset that applied at that instant, so
//! formatting is pure (tests use [`Stamp::utc`]); only [`Stamp::local`] asks the C library
//! for the zone.

/// A point in time plus the local UTC offset at that point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub unix: u64,
    /// Seconds east of UTC.
    pub utc_offset: i64,
}

impl Stamp {
    pub fn utc(unix: u64) -> Stamp {
        Stamp {
            unix,
            utc_offset: 0,
        }
    }

    /// The local zone's offset at `unix` (`localtime_r`, which reads TZ / /etc/localtime).
    pub fn local(unix: u64) -> Stamp {
        let t = libc::time_t::try_from(unix).unwrap_or(libc::time_t::MAX);
        // SAFETY: `tm` is plain old data; localtime_r only writes into it and is thread-safe.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to a time_t and a tm owned by this frame.
        let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
        Stamp {
            unix,
            utc_offset: if ok { tm.tm_gmtoff } else { 0 },
        }
    }

    /// `YYYY-MM-DD HH:MM:SS` in the stamp's zone.
    pub fn format(&self) -> String {
        let secs = i64::try_from(self.unix)
            .unwrap_or(i64::MAX / 2)
            .saturating_add(self.utc_offset);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        // From the openvpn 2.6.14 capture (TZ=UTC): TIME,2026-11-28 19:28:31,1795894111.
        assert_eq!(Stamp::utc(1_795_894_111).format(), "2026-11-28 19:28:31");
        assert_eq!(Stamp::utc(0).format(), "1970-01-01 00:00:00");
        assert_eq!(Stamp::utc(951_782_400).format(), "2000-02-29 00:00:00");
        assert_eq!(Stamp::utc(1_714_563_000).format(), "2024-05-01 11:30:00");
    }

    #[test]
    fn offset_applies() {
        let s = Stamp {
            unix: 1_795_894_111,
            utc_offset: 3600,
        };
        assert_eq!(s.format(), "2026-11-28 20:28:31");
        let s = Stamp {
            unix: 0,
            utc_offset: -3600,
        };
        assert_eq!(s.format(), "1969-12-31 23:00:00");
    }

    #[test]
    fn local_keeps_unix() {
        assert_eq!(Stamp::local(1_795_894_111).unix, 1_795_894_111);
    }
}
