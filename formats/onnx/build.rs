//! Generates the ONNX message types from the vendored `proto/onnx.proto`
//! with protox (a pure-Rust protobuf compiler), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"])?;
    let mut cfg = prost_build::Config::new();
    // `bytes::Bytes` for every bytes field: raw_data then borrows from the
    // memory map instead of being copied.
    cfg.bytes(["."]);
    cfg.compile_fds(fds)?;
    Ok(())
}
