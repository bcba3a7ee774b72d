//! `mc-server`: the relay as a program (SPEC §14). See `examples::server`.

// mimalloc: +12–30 % relay round trips in `mc-bench` against glibc malloc (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(examples::server::main());
}
