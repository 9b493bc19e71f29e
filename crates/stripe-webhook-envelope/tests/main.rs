//! The envelope's integration tests, in one binary: each file beside this one is a module of it.
//! One binary links the tree once and runs all its tests in parallel, where cargo would link one
//! binary per file and run them one after another. The manifest says `autotests = false`, so a new
//! file must be declared below; a test in stripe-webhook-testkit fails when one is not. The module
//! name filters one file's tests: `--test integration <file>::` (CONTRIBUTING.md).

mod golden;
mod properties;
