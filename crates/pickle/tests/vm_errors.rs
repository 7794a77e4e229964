//! The VM names why it stopped by kind (the readers map kinds onto the IR's
//! error variants): limits, truncation, refused globals.

use modelconv_pickle::vm::{PickleErrorKind, Vm, MAX_MEMO, MAX_STACK};
use modelconv_pickle::PYTHON;

fn kind(bytes: &[u8]) -> PickleErrorKind {
    Vm::new(bytes, None, &PYTHON)
        .run()
        .expect_err("the pickle is refused")
        .kind
}

#[test]
fn limits_are_named() {
    let mut deep = b"\x80\x02".to_vec();
    deep.resize(2 + MAX_STACK + 1, b'N');
    deep.push(b'.');
    assert_eq!(kind(&deep), PickleErrorKind::Limit);

    let mut memo = b"\x80\x04N".to_vec();
    memo.resize(3 + MAX_MEMO + 1, 0x94);
    memo.push(b'.');
    assert_eq!(kind(&memo), PickleErrorKind::Limit);
}

#[test]
fn truncation_is_named() {
    // BINUNICODE of 10 bytes with 3 present; a text argument with no newline.
    assert_eq!(kind(b"\x80\x02X\x0a\x00\x00\x00abc"), PickleErrorKind::Truncated);
    assert_eq!(kind(b"I12"), PickleErrorKind::Truncated);
    // No STOP: the stream ends before the pickle does.
    assert_eq!(kind(b"\x80\x02N"), PickleErrorKind::Truncated);
}

#[test]
fn refused_globals_are_named() {
    assert_eq!(
        kind(b"cos\nsystem\n(S'echo hi'\ntR."),
        PickleErrorKind::RefusedGlobal("os.system".into())
    );
    // An unknown opcode is malformed, not truncated.
    assert_eq!(kind(b"\x80\x02\xff"), PickleErrorKind::Malformed);
}
