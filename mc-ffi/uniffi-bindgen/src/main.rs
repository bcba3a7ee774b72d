//! `uniffi-bindgen`: generates mc-ffi's Kotlin, Swift and Python bindings from the built
//! library (`generate --library target/…/libmc_ffi.so`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
