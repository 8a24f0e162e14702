//! RocksDB is linked statically from Debian's `librocksdb.a` (`ROCKSDB_STATIC` in
//! `.cargo/config.toml`); these are the libraries that archive calls, which the shared
//! `librocksdb.so` would have named itself.
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var_os("ROCKSDB_STATIC").is_some() {
        for lib in ["snappy", "z", "bz2", "lz4", "zstd"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
}
