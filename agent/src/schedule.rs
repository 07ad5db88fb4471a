//! Collection schedule: standard 5-field cron as users write it (`0 */4 * * *`), translated
//! for the `cron` crate (which wants a seconds field and numbers Sunday as 1), plus a
//! per-agent splay.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone)]
pub struct Schedule {
    inner: cron::Schedule,
    pub text: String,
}

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Day-of-week numbers as cron(5) writes them (0 or 7 = Sunday) become names, which mean
/// the same thing to every cron implementation.
fn translate_dow(field: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut num = String::new();
    let flush = |num: &mut String, out: &mut String, after_slash: bool| -> Result<(), String> {
        if num.is_empty() {
            return Ok(());
        }
        if after_slash {
            out.push_str(num);
        } else {
            let n: usize = num
                .parse()
                .map_err(|_| format!("bad day of week '{num}'"))?;
            if n > 7 {
                return Err(format!("day of week {n} is out of range 0-7"));
            }
            out.push_str(DAYS[n % 7]);
        }
        num.clear();
        Ok(())
    };
    let mut after_slash = false;
    for c in field.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            flush(&mut num, &mut out, after_slash)?;
            after_slash = c == '/';
            if c == ',' || c == '-' {
                after_slash = false;
            }
            out.push(c);
        }
    }
    flush(&mut num, &mut out, after_slash)?;
    Ok(out)
}

impl Schedule {
    /// Parses 5-field cron or one of @hourly, @daily, @weekly, @monthly.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        let expr = match t {
            "@hourly" => "0 0 * * * *".to_string(),
            "@daily" | "@midnight" => "0 0 0 * * *".to_string(),
            "@weekly" => "0 0 0 * * SUN".to_string(),
            "@monthly" => "0 0 0 1 * *".to_string(),
            _ => {
                let fields: Vec<&str> = t.split_whitespace().collect();
                if fields.len() != 5 {
                    return Err(format!("schedule '{t}' must have 5 fields (minute hour day month weekday), like \"0 */4 * * *\""));
                }
                format!(
                    "0 {} {} {} {} {}",
                    fields[0],
                    fields[1],
                    fields[2],
                    fields[3],
                    translate_dow(fields[4])?
                )
            }
        };
        let inner = cron::Schedule::from_str(&expr).map_err(|e| format!("schedule '{t}': {e}"))?;
        Ok(Schedule {
            inner,
            text: t.to_string(),
        })
    }

    /// The next collection time after `after`, shifted by `splay`.
    pub fn next_after(&self, after: DateTime<Utc>, splay: Duration) -> Option<DateTime<Utc>> {
        // The splayed time of the previous occurrence may still be ahead of us.
        let base = after - splay;
        self.inner.after(&base).next().map(|t| t + splay)
    }
}

/// A stable per-agent offset in [0, max_seconds): the same agent always collects at the same
/// point of the window, different agents spread over it.
pub fn splay_for(agent_id: &str, max_seconds: u64) -> Duration {
    if max_seconds == 0 {
        return Duration::zero();
    }
    use sha2::Digest;
    let h = sha2::Sha256::digest(agent_id.as_bytes());
    let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    Duration::seconds((n % max_seconds) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_field_cron_as_users_write_it() {
        let s = Schedule::parse("0 */4 * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 5, 30, 0).unwrap();
        assert_eq!(
            s.next_after(t, Duration::zero()).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap()
        );
        let s = Schedule::parse("15 2 * * 0").unwrap(); // Sundays 02:15
        let next = s.next_after(t, Duration::zero()).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 1, 4, 2, 15, 0).unwrap());
        let weekdays = Schedule::parse("0 9 * * 1-5").unwrap();
        let sat = Utc.with_ymd_and_hms(2026, 1, 3, 10, 0, 0).unwrap();
        assert_eq!(
            weekdays.next_after(sat, Duration::zero()).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
        );
        assert!(Schedule::parse("0 */4 * *").is_err());
        assert!(Schedule::parse("0 0 * * 9").is_err());
        assert!(Schedule::parse("@hourly").is_ok());
    }

    #[test]
    fn splay_is_stable_and_bounded() {
        let a = splay_for("agt_1", 900);
        assert_eq!(a, splay_for("agt_1", 900));
        assert!(a >= Duration::zero() && a < Duration::seconds(900));
        assert_ne!(splay_for("agt_1", 900), splay_for("agt_2", 900));
        let s = Schedule::parse("0 * * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 5, 0, 10).unwrap();
        // With a 10-minute splay the 05:00 occurrence fires at 05:10, still ahead.
        assert_eq!(
            s.next_after(t, Duration::minutes(10)).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 5, 10, 0).unwrap()
        );
    }
}
