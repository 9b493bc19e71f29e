//! `reconcile --archive-missing` cannot hurt a running server: the REAL server runs as `nobody`
//! on an archive it owns, and has not yet created today's partition; `reconcile` run as root
//! into that archive refuses (exit 2, naming both owners) and leaves nothing behind, so the
//! server keeps answering 200. Run as the archive's owner, reconcile fetches the missing event
//! into today's partition, and the server still answers 200 after it.
//!
//! Needs root (to run the server and the CLI as `nobody` with `setpriv`, as `./scripts/test`
//! does); it fails, never skips, without it.

use crate::common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output};

use common::{cli_path, describe, fixtures, now, post_signed, server_bin, stdout, with_created};
use stripe_webhook_envelope::{ARCHIVE_PREFIX, ReceivedAt};
use stripe_webhook_testkit::fake_stripe::{Access, FakeStripe};
use stripe_webhook_testkit::server::ServerProcess;

const SECRET: &str = "whsec_reconcile_owner";
const KEY: &str = "sk_test_51ReconcileOwner0123456789abcdefgh";
/// `nobody` and `nogroup` on Debian.
const NOBODY: u32 = 65534;
const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
];

fn rfc3339(secs: i64) -> String {
    ReceivedAt::from_unix_millis(secs * 1000).rfc3339_millis()
}

/// `reconcile <dir> --archive-missing <dir>` over the last hour, as root or (`as_nobody`) as
/// the archive's owner.
fn reconcile(stripe: &FakeStripe, dir: &Path, as_nobody: bool) -> Output {
    let dir = dir.to_str().expect("utf-8");
    let (since, until) = (rfc3339(now() - 3600), rfc3339(now()));
    let args = [
        "reconcile",
        dir,
        "--since",
        &since,
        "--until",
        &until,
        "--archive-missing",
        dir,
    ];
    let mut cmd = if as_nobody {
        let mut cmd = Command::new(AS_NOBODY[0]);
        cmd.args(&AS_NOBODY[1..]).arg(cli_path());
        cmd
    } else {
        Command::new(cli_path())
    };
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("STRIPE_API_BASE", stripe.url())
        .env("STRIPE_API_KEY", KEY)
        .output()
        .expect("run reconcile")
}

/// Every path under `dir` with its owner.
fn owners(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            out.push((path.display().to_string(), meta.uid()));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
#[ignore = "full tier (./scripts/test): runs the server and the CLI as nobody, needs root and setpriv"]
fn reconcile_as_another_user_is_refused_and_the_server_keeps_answering() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test runs the server and the CLI as nobody with setpriv: run it as root (./scripts/test does)"
    );
    let (_, fixture) = fixtures()
        .into_iter()
        .find(|(t, b)| t == "charge.succeeded" && !b.contains("\"account\": \"acct_"))
        .expect("a charge.succeeded fixture");
    let body = |id: &str| {
        with_created(
            &common::event_body(&fixture, id, false),
            &(now() - 600).to_string(),
        )
    };
    let stripe = FakeStripe::start();
    stripe.key(KEY, Access::Secret);
    let withheld = "evt_1OwnerWithheld";
    stripe.event(&body(withheld), None);

    // The archive belongs to the server's user; its parent is only traversable.
    let base = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let archive = base.path().join("archive");
    std::fs::create_dir(&archive).expect("mkdir");
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(&archive, Some(NOBODY), Some(NOBODY)).expect("chown");
    let wrapper: Vec<String> = AS_NOBODY.iter().map(|s| (*s).to_owned()).collect();
    let archive_dir = archive.to_str().expect("utf-8");
    let server = ServerProcess::start_under(
        &wrapper,
        server_bin(),
        &[
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("SINK", "file"),
            ("ARCHIVE_DIR", archive_dir),
        ],
    );
    let today = archive.join(ARCHIVE_PREFIX).join(
        ReceivedAt::from_unix_millis(now() * 1000)
            .partition()
            .to_string(),
    );
    assert!(
        !today.exists(),
        "the server creates today's partition with its first record, not before: {:?}",
        owners(&archive)
    );

    // As root: refused before anything is written, with the reason.
    let o = reconcile(&stripe, &archive, false);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "owned by uid {NOBODY}, but reconcile runs as uid 0"
        )),
        "{}",
        describe(&o)
    );
    assert!(
        owners(&archive).iter().all(|(_, uid)| *uid == NOBODY),
        "{:?}",
        owners(&archive)
    );
    let r = post_signed(&server, SECRET, body("evt_1OwnerAfterRefusal").as_bytes());
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.logs());

    // As the owner: the missing event is fetched and archived; everything stays the server's.
    let o = reconcile(&stripe, &archive, true);
    assert_eq!(
        o.status.code(),
        Some(1),
        "missing, then fetched: {}",
        describe(&o)
    );
    assert!(stdout(&o).contains(withheld), "{}", describe(&o));
    assert!(
        owners(&archive).iter().all(|(_, uid)| *uid == NOBODY),
        "{:?}",
        owners(&archive)
    );
    let r = post_signed(&server, SECRET, body("evt_1OwnerAfterFill").as_bytes());
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.logs());
    let o = reconcile(&stripe, &archive, true);
    assert_eq!(
        o.status.code(),
        Some(0),
        "nothing missing now: {}",
        describe(&o)
    );

    let (status, log) = server.terminate();
    assert!(status.success(), "server: {status}\n{log}");
}
