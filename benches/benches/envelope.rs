//! placeholder: being written (issue 2)
fn main() {}
