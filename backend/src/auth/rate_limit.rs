//! Login attempt limits per user name and per client address (governor's
//! GCRA). Both must admit an attempt; either refusing answers 429.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginLimiter {
    per_user: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginLimiter {
    /// `per_user` and `per_ip` attempts a minute, each allowed in a burst.
    pub fn new(per_user: u32, per_ip: u32) -> Self {
        let quota = |n: u32| {
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            Quota::per_minute(n).allow_burst(n)
        };
        Self {
            per_user: RateLimiter::keyed(quota(per_user)),
            per_ip: RateLimiter::keyed(quota(per_ip)),
        }
    }

    /// Records an attempt; `Err` carries how long to wait.
    pub fn check(&self, user: &str, ip: IpAddr) -> Result<(), Duration> {
        let clock = governor::clock::DefaultClock::default();
        use governor::clock::Clock;
        let now = clock.now();
        // Check the address first: a spray over many names must not lock
        // out each of those users as a side effect.
        self.per_ip
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(now))?;
        self.per_user
            .check_key(&user.to_lowercase())
            .map_err(|not_until| not_until.wait_time_from(now))?;
        Ok(())
    }

    /// Forgets keys whose limits have fully recovered.
    pub fn shrink(&self) {
        self.per_user.retain_recent();
        self.per_ip.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_and_each_address_has_its_own_budget() {
        let limiter = LoginLimiter::new(3, 5);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check("alice", ip).is_ok());
        }
        assert!(limiter.check("alice", ip).is_err(), "fourth try for alice");
        assert!(limiter.check("ALICE", "10.0.0.2".parse().unwrap()).is_err());
        assert!(limiter.check("bob", "10.0.0.3".parse().unwrap()).is_ok());
        // 10.0.0.1 used 4 of 5; one more, then refused whatever the name.
        assert!(limiter.check("carol", ip).is_ok());
        assert!(limiter.check("dave", ip).is_err());
    }
}
