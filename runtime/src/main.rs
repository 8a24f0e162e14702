//! The `weir` binary; everything it does is in [`weir_runtime::cli`].

fn main() -> std::process::ExitCode {
    weir_runtime::cli::main()
}
