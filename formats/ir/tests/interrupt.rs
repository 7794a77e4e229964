//! Ctrl-C: once an interrupt is requested, writes stop at the next chunk
//! with `Error::Interrupted`, and the uncommitted temp file is removed.
//! (Its own test binary: the interrupt flag is process-wide.)

use modelconv_ir::{request_interrupt, Error, MemSource, NoProgress, OutputFile, WriteOptions};

#[test]
fn interrupted_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.bin");
    let mut out = OutputFile::create(&dest, &WriteOptions::default()).unwrap();
    out.write_all(b"header").unwrap();
    request_interrupt();
    let err = out
        .write_source(&MemSource::new(vec![1u8; 1 << 20]), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    drop(out);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
