//! The ONNX reader (protobuf decode, tensor checks, data of every type,
//! external-data path checks) and the fp16/quantization rewrites on
//! arbitrary bytes. Run: cargo +nightly fuzz run onnx  (seed corpus: fixtures/onnx)
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelconv_onnx::{fp16, quant, OnnxFile};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("modelconv-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("m.onnx");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(f) = OnnxFile::open(&path) else { return };
    if let Ok((inits, _)) = f.tensors(true) {
        for i in inits {
            if i.tensor.info.byte_len < 1 << 20 {
                let _ = i.tensor.read_all();
            }
        }
    }
    let _ = modelconv_onnx::summary::summarize(&f, true);
    let _ = fp16::to_fp16(&f, &fp16::Fp16Options::default());
    let _ = quant::quantize(&f, &quant::QuantOptions::default());
});
