fn main() {
    std::process::exit(fwd::cli::main());
}
