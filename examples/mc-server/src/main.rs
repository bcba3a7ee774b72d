//! `mc-server`: the relay as a program. See the `mc_server` library for its parts.

// mimalloc: +12–30 % relay round trips in `mc-bench` against glibc malloc (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(mc_server::main());
}
