//! The operator CLI's integration tests, in one binary: each file beside this one is a module of
//! it. One binary links the tree once and runs all its tests in parallel, where cargo would link
//! one binary per file and run them one after another. The manifest says `autotests = false`, so a
//! new file must be declared below; a test in stripe-webhook-testkit fails when one is not. The
//! module name filters one file's tests: `--test integration <file>::` (CONTRIBUTING.md).

mod common;

mod delivery;
mod forgeries;
mod forward;
mod glacier;
mod keyring;
mod large_archive;
mod legacy;
mod local_archive;
mod multi_member;
mod proxy;
mod reconcile;
mod reconcile_owner;
mod s3;
