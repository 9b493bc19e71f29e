//! A secret rotated through the keyring, end to end on the REAL server: the old secret alone,
//! then old and new during Stripe's overlap, then the old one retired (kept in the keyring,
//! never deleted). The server verifies with the entries in use and refuses a retired one;
//! `verify` with the whole keyring proves every record, counting each entry's; with the retired
//! entry removed, it names, from each record's own signing time, the entry it lacks.

use crate::common;

use std::path::Path;

use common::{count, describe, failures, now, run, secret, server_bin};
use stripe_webhook_service::keyring::rfc3339;
use stripe_webhook_testkit::http::post_webhook;
use stripe_webhook_testkit::server::ServerProcess;
use stripe_webhook_verify::signature_header;

const OLD: &str = "whsec_keyring_old";
const NEW: &str = "whsec_keyring_new";

fn body(id: &str) -> String {
    common::invoice_event(id, "invoice.paid", 4200)
}

/// Starts the server on `archive` with the keyring `text` (written to a file).
fn server(archive: &Path, text: &str) -> ServerProcess {
    let file = archive.with_extension("keyring");
    std::fs::write(&file, text).expect("write keyring");
    ServerProcess::start(
        server_bin(),
        &[
            ("STRIPE_WEBHOOK_KEYRING_FILE", file.to_str().expect("utf-8")),
            ("SINK", "file"),
            ("ARCHIVE_DIR", archive.to_str().expect("utf-8")),
        ],
    )
}

/// Posts `id`'s body signed at `t` with `secrets` (Stripe signs with both during an overlap).
fn post(server: &ServerProcess, secrets: &[&str], t: i64, id: &str) -> u16 {
    let keys: Vec<_> = secrets.iter().map(|s| secret(s)).collect();
    let refs: Vec<_> = keys.iter().collect();
    let body = body(id);
    let header = signature_header(&refs, t, body.as_bytes());
    post_webhook(server.addr, Some(&header), body.as_bytes())
        .expect("post")
        .status
}

#[test]
fn a_rotation_through_the_keyring_keeps_every_record_verifiable() {
    // Built before the clock is read: the first call may compile the server for minutes, and the
    // signatures below are timed relative to `start` (one is 200 s old, inside the 300 s window).
    server_bin();
    let start = now();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let old_from = rfc3339(start - 30 * 86_400);
    let new_from = rfc3339(start - 100);

    // 1. The old secret alone; A is signed before the new secret's time in use.
    let s = server(&archive, &format!("live-old {OLD} {old_from}\n"));
    assert_eq!(post(&s, &[OLD], start - 200, "evt_1KeyA"), 200);
    assert!(s.terminate().0.success());

    // 2. Rolled in Stripe: the old secret expires in an hour; both are in use until then.
    let s = server(
        &archive,
        &format!(
            "live-old {OLD} {old_from} {}\nlive-new {NEW} {new_from}\n",
            rfc3339(start + 3600)
        ),
    );
    assert_eq!(post(&s, &[NEW], start, "evt_1KeyB"), 200);
    assert_eq!(post(&s, &[OLD], start, "evt_1KeyC"), 200);
    assert_eq!(post(&s, &[OLD, NEW], start, "evt_1KeyD"), 200);
    assert!(s.terminate().0.success());

    // 3. Retired: kept in the keyring with its retirement time; it verifies nothing new.
    let keyring = format!(
        "# retired secrets stay: the archive's records need them\n\
         live-old {OLD} {old_from} {}\n\
         live-new {NEW} {new_from}\n",
        rfc3339(start - 1)
    );
    let s = server(&archive, &keyring);
    assert_eq!(post(&s, &[OLD], now(), "evt_1KeyE"), 400);
    assert_eq!(post(&s, &[NEW], now(), "evt_1KeyF"), 200);
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("1 entry in use; 1 retired entry kept for audits") && !log.contains(OLD),
        "{log}"
    );

    // The whole keyring proves every archived record, whichever secret signed it (D, signed
    // with both, counts for the first entry that verifies it).
    let keyring_file = dir.path().join("all.keyring");
    std::fs::write(&keyring_file, &keyring).expect("write");
    let archive_arg = archive.to_str().expect("utf-8");
    let o = run(&[
        "verify",
        archive_arg,
        "--keyring-file",
        keyring_file.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(count(&o, "verified"), 5, "{}", describe(&o));
    assert!(
        common::stdout(&o).contains("(by secret: live-old=3 live-new=2)"),
        "{}",
        describe(&o)
    );

    // Without the retired entry, each record it signed fails, naming what is missing.
    let partial = dir.path().join("partial.keyring");
    std::fs::write(&partial, format!("live-new {NEW} {new_from}\n")).expect("write");
    let o = run(&[
        "verify",
        archive_arg,
        "--keyring-file",
        partial.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let failed = failures(&o);
    let reason = |id: &str| {
        failed
            .iter()
            .find(|(_, fid, _)| fid == id)
            .map(|(_, _, reason)| reason.clone())
            .unwrap_or_else(|| panic!("{id} did not fail: {}", describe(&o)))
    };
    assert_eq!(
        failed.len(),
        2,
        "A and C were signed with the old secret alone"
    );
    let a = reason("evt_1KeyA");
    assert!(
        a.contains(&format!(
            "signed at {}, when no keyring entry was in use: the keyring lacks the secret that signed it",
            rfc3339(start - 200)
        )) && a.contains(&format!("the next in use after: live-new (in use from {new_from})")),
        "{a}"
    );
    let c = reason("evt_1KeyC");
    assert!(
        c.contains("when live-new (in use from") && c.contains("none verifies it"),
        "{c}"
    );
    assert!(!common::stdout(&o).contains(OLD) && !common::stdout(&o).contains(NEW));

    // Secrets and a keyring together are ambiguous.
    let o = run(&[
        "verify",
        archive_arg,
        "--secret",
        NEW,
        "--keyring-file",
        partial.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}
