//! An error and its causes as one line for people: `{:#}` of an `anyhow` chain, minus
//! any cause whose text its wrapper already printed. tungstenite's IO error, for one,
//! shows its `io::Error` and then returns it again as its source, which printed "failed to
//! lookup address information" twice.

/// `outer: cause: root`, each cause once.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_wrapper_already_shows_is_printed_once() {
        let io = std::io::Error::other("failed to lookup address information");
        let e = anyhow::Error::new(io)
            .context("IO error: failed to lookup address information")
            .context("connecting to ws://x");
        assert_eq!(
            error_chain(&e),
            "connecting to ws://x: IO error: failed to lookup address information"
        );
        let e = anyhow::anyhow!("root").context("outer");
        assert_eq!(error_chain(&e), "outer: root");
    }
}
