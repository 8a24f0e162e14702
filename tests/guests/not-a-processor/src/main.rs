//! A plain WASI command, built for another world than weir's: `weir` must refuse it clearly.
fn main() {
    println!("hello from a wasi:cli command");
}
