//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the `migrations`
//! directory at compile time, and cargo does not know that on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
