//! Compiles `src/helper.c` as a static library, optimised and with glibc's
//! `_FORTIFY_SOURCE`, as distributions build C libraries (so `recv` into a buffer of known
//! size becomes `__recv_chk`).

fn main() {
    println!("cargo:rerun-if-changed=src/helper.c");
    cc::Build::new()
        .file("src/helper.c")
        .opt_level(2)
        .define("_FORTIFY_SOURCE", "2")
        .warnings(true)
        .compile("verdant_patch_ctest");
}
