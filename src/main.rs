//! The `chainmesh` node program and tools; see `chainmesh --help`.

fn main() -> std::process::ExitCode {
    chainmesh::cli::main()
}
