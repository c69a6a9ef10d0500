//! The `config` target: [`LiveConfig::load`], the TOML file and the environment.
//!
//! Input: the TOML file's bytes, optionally followed by a NUL byte and environment
//! lines `NAME=VALUE` (`COINBASE_PRODUCTS=…`, `BINANCE_SYMBOLS=…`, the URLs). With an
//! empty TOML part and some environment lines, no file is loaded at all.
//!
//! Properties, besides never panicking:
//! * Loading the same file and environment twice gives the same config or the same
//!   error.
//! * An accepted config obeys the validation rules: WebSocket and REST URLs with their
//!   schemes, a depth limit of 1 to 5000, a non-zero reconnect delay no larger than its
//!   maximum, at least one failure before the breaker opens, instrument names that are
//!   non-empty, free of whitespace and control characters and listed once (Binance's
//!   upper-cased), and durations that can be added to the current time (the live
//!   session does `Instant::now() + d`).
//! * A refused config has an error message.

use std::time::Instant;

use hermes_live::LiveConfig;

use crate::scratch;

fn check_names(names: &[String]) {
    for (k, n) in names.iter().enumerate() {
        assert!(!n.is_empty(), "accepted an empty name in {names:?}");
        assert!(
            !n.chars().any(|c| c.is_whitespace() || c.is_control()),
            "accepted {n:?}"
        );
        assert!(!names[..k].contains(n), "accepted {n:?} twice");
    }
}

fn check_valid(c: &LiveConfig) {
    for feed in &c.feeds {
        let url = &feed.ws_url;
        assert!(
            url.starts_with("ws://") || url.starts_with("wss://"),
            "{url:?}"
        );
        check_names(&feed.symbols);
        let p = feed.protocol();
        if p.default_rest_url().is_some() {
            let rest = &feed.rest_url;
            assert!(
                rest.starts_with("http://") || rest.starts_with("https://"),
                "{rest:?}"
            );
            assert!(p.valid_depth_limit(feed.depth_limit));
            for s in &feed.symbols {
                assert_eq!(
                    *s,
                    s.to_ascii_uppercase(),
                    "Binance symbols are upper-cased"
                );
            }
        }
    }
    let p = &c.policy;
    assert!(!p.reconnect_min.is_zero() && p.reconnect_min <= p.reconnect_max);
    assert!(p.breaker_failures >= 1);
    let now = Instant::now();
    for d in [
        p.reconnect_min,
        p.reconnect_max,
        p.breaker_cooldown,
        p.healthy_after,
        p.ping_interval,
        p.idle_timeout,
        p.resubscribe_interval,
    ] {
        assert!(now.checked_add(d).is_some(), "accepted a duration of {d:?}");
    }
}

/// Runs the `config` target on `input`.
pub fn run(input: &[u8]) {
    let (toml, env) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let path = (!toml.is_empty() || env.is_empty()).then(|| scratch::write("config.toml", toml));
    let first = LiveConfig::load(path.as_deref(), &lookup);
    let again = LiveConfig::load(path.as_deref(), &lookup);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => assert_eq!(format!("{a:#}"), format!("{b:#}")),
        _ => panic!("loading the same config twice: {first:?} then {again:?}"),
    }
    match first {
        Ok(c) => check_valid(&c),
        Err(e) => assert!(!format!("{e:#}").is_empty(), "an error without a message"),
    }
}
