//! `mc-server`: the relay as a program (SPEC §14). See `examples::server`.

fn main() {
    std::process::exit(examples::server::main());
}
