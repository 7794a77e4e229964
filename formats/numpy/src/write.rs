//! Writing `.npy` (one array) and `.npz` (stored members), little-endian, C
//! order, headers as numpy writes them (version 1, data 64-byte aligned).

use modelconv_ir::{DType, Error, Model, OneFilePlan, Result, Tensor, WriteOptions, WritePlan, Writer};
use modelconv_zipout::ZipOut;
use std::path::Path;

pub struct NumpyWriter;

/// The `descr` numpy gives this type; bfloat16 and float8 are opaque
/// (`|V2`, `|V1`), as ml_dtypes arrays are saved.
fn descr(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        DType::BF16 => "|V2",
        DType::F8_E4M3 | DType::F8_E5M2 => "|V1",
        _ => return None,
    })
}

fn header(t: &Tensor) -> Vec<u8> {
    modelconv_npy::write_header(descr(t.info.dtype).unwrap_or("|u1"), &t.info.shape)
}

fn is_npz(dest: &Path) -> bool {
    dest.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz"))
}

impl Writer for NumpyWriter {
    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>> {
        if opts.max_shard_size.is_some() {
            return Err(Error::unsupported("--max-shard-size is not supported for NumPy output"));
        }
        model.check_unique_names()?;
        model.refuse_types(
            "NumPy",
            |d| descr(d).is_some(),
            |_| "convert with --dtype F32, F16 or BF16, or leave them out with --exclude".into(),
        )?;
        let npz = is_npz(dest);
        if !npz && model.tensors.len() != 1 {
            return Err(Error::invalid(format!(
                "{}: a .npy file holds one array and this model has {}; write a .npz (one member per tensor) or pick one with --include",
                dest.display(),
                model.tensors.len()
            )));
        }
        // Both are written in one pass (the .npz's CRCs follow their data).
        let tensors = model.tensors.clone();
        Ok(OneFilePlan::boxed(
            dest,
            opts,
            model.data_bytes(),
            true,
            move |out, progress| {
                if npz {
                    let mut zip = ZipOut::new();
                    for t in &tensors {
                        zip.streamed(
                            out,
                            &format!("{}.npy", t.info.name),
                            &header(t),
                            t.data.as_ref(),
                            progress,
                        )
                        .map_err(|e| e.for_tensor(&t.info.name))?;
                    }
                    zip.finish(out)
                } else if let Some(t) = tensors.first() {
                    out.write_all(&header(t))?;
                    out.write_source(t.data.as_ref(), progress)
                        .map_err(|e| e.for_tensor(&t.info.name))
                } else {
                    Ok(())
                }
            },
        ))
    }
}
