//! `pasta`: user-mode networking for a network namespace (the mode follows
//! argv[0], like `passt`).

fn main() -> std::process::ExitCode {
    passt_rs::app::main()
}
