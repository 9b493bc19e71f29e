//! Embeds every bundled sample event (`fixtures/events/*.json`) into the binary.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read when the script runs, not when it is compiled: a build script compiled in another
    // checkout (a shared or copied target directory) must still read this checkout's fixtures.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir).join("../../fixtures/events");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_else(|e| panic!("cannot read the bundled events in {}: {e}", dir.display()));
    names.sort();
    let mut out = String::from(
        "/// Bundled sample events: (name, pretty-printed body as Stripe sends it).\npub(crate) const EVENTS: &[(&str, &str)] = &[\n",
    );
    for name in &names {
        let path = dir.join(name).canonicalize().expect("fixture path");
        let stem = name.trim_end_matches(".json");
        writeln!(
            out,
            "    ({stem:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("write to string");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("events.rs");
    std::fs::write(dest, out).expect("write events.rs");
}
