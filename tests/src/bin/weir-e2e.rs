//! The `weir` program, built with the tests so they always run the current code
//! (`CARGO_BIN_EXE_weir-e2e`).

fn main() -> std::process::ExitCode {
    weir_runtime::cli::main()
}
