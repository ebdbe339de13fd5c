//! `passt`: user-mode networking for a virtual machine (the mode follows
//! argv[0], so a `pasta` symlink to this binary runs pasta).

fn main() -> std::process::ExitCode {
    passt_rs::app::main()
}
