//! A fresh server's first scrape, before any request: every counter series of a known label set
//! (the ones the dashboards and alert rules query) is there at 0, for the sink in use only.

use std::path::Path;

use stripe_webhook_core::metrics::zero_series;
use stripe_webhook_testkit::http::request;
use stripe_webhook_testkit::server::ServerProcess;

#[test]
fn the_first_scrape_shows_every_known_counter_at_zero() {
    let archive = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_stripe-webhook-server")),
        &[
            ("STRIPE_WEBHOOK_SECRET", "whsec_metrics_at_zero"),
            ("ARCHIVE_DIR", archive.path().to_str().expect("utf-8")),
        ],
    );
    let scrape = request(server.metrics_addr(), "GET", "/metrics", &[], b"")
        .expect("scrape")
        .text();
    let series = zero_series("file");
    assert!(series.len() > 30, "{series:?}");
    for (name, label) in series {
        let line = match label {
            None => format!("{name} 0\n"),
            Some((label, value)) => format!("{name}{{{label}=\"{value}\"}} 0\n"),
        };
        assert!(
            scrape.contains(&line),
            "{line:?} missing from the first scrape:\n{scrape}"
        );
    }
    assert!(
        !scrape.contains("stripe_webhook_firehose_"),
        "another sink's counters:\n{scrape}"
    );
    server.terminate();
}
