fn main() -> std::process::ExitCode {
    tj_deploy::cli::main()
}
