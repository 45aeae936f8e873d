fn main() -> std::process::ExitCode {
    tickflow::cli::main()
}
