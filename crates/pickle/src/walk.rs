//! The rest of a pickle read opcode by opcode, without running it: what
//! `scan` does after the VM stops at one of its own limits (a stack of
//! 2^20 items, 2^24 objects) that CPython does not have. CPython goes on
//! and reaches whatever comes next, so the scan must too: every GLOBAL and
//! INST is named, a STACK_GLOBAL by the last two strings pushed (through
//! the memo too), and EXT and REDUCE counted.

use crate::vm::ScanLog;
use std::collections::HashMap;

/// Strings remembered for STACK_GLOBAL through the memo, at most.
const MAX_MEMO_STRINGS: usize = 1 << 16;
/// Longest string kept as a possible module or name (no importable
/// module's name is longer); a longer one names "?", so memory stays
/// bounded however often a huge string is memoized.
const MAX_NAME: usize = 1024;

/// Walks `b[from..]` to the first STOP (or to where it stops being a
/// pickle), recording into `log`. Returns where it ended.
pub fn walk(b: &[u8], from: usize, log: &mut ScanLog) -> usize {
    let mut w = Walker {
        b,
        pos: from,
        last: [None, None],
        memo: HashMap::new(),
        next_memo: 0,
    };
    while let Some(&op) = b.get(w.pos) {
        let at = w.pos;
        w.pos += 1;
        if op == b'.' || w.step(op, at, log).is_none() {
            break;
        }
    }
    w.pos
}

struct Walker<'a> {
    b: &'a [u8],
    pos: usize,
    /// The last two strings pushed (STACK_GLOBAL's module and name).
    last: [Option<String>; 2],
    memo: HashMap<u64, String>,
    next_memo: u64,
}

impl Walker<'_> {
    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let n = usize::try_from(n).ok()?;
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn le(&mut self, n: usize) -> Option<u64> {
        let s = self.take(n as u64)?;
        Some(s.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    }
    fn line(&mut self) -> Option<String> {
        let rest = self.b.get(self.pos..)?;
        let end = rest.iter().position(|&c| c == b'\n')?;
        self.pos += end + 1;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
    fn pushed(&mut self, s: Option<String>) {
        let s = s.filter(|s| s.len() <= MAX_NAME);
        self.last = [self.last[1].take(), s];
    }
    fn memoize(&mut self, key: u64) {
        if let Some(s) = self.last[1].clone() {
            if self.memo.len() < MAX_MEMO_STRINGS || self.memo.contains_key(&key) {
                self.memo.insert(key, s);
            }
        }
    }

    /// One opcode's arguments read and its effect recorded; `None` at an
    /// opcode that is not one or an argument that runs out.
    fn step(&mut self, op: u8, at: usize, log: &mut ScanLog) -> Option<()> {
        match op {
            b'c' | b'i' => {
                let (m, n) = (self.line()?, self.line()?);
                log.record(&m, &n, at, 1);
                self.pushed(None);
            }
            0x93 => {
                let [m, n] = [self.last[0].take(), self.last[1].take()];
                let (m, n) = (m.unwrap_or_else(|| "?".into()), n.unwrap_or_else(|| "?".into()));
                log.record(&m, &n, at, 1);
            }
            b'S' | b'V' => {
                let s = self.line()?;
                self.pushed(Some(s.trim_matches(|c| c == '\'' || c == '"').to_string()));
            }
            b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                let width = match op {
                    0x8c | b'U' => 1,
                    0x8d => 8,
                    _ => 4,
                };
                let n = self.le(width)?;
                let b = self.take(n)?;
                let s = (b.len() <= MAX_NAME).then(|| String::from_utf8_lossy(b).into_owned());
                self.pushed(s);
            }
            b'B' | b'C' | 0x8e | 0x96 | 0x8a | 0x8b => {
                let width = match op {
                    b'C' | 0x8a => 1,
                    0x8e | 0x96 => 8,
                    _ => 4,
                };
                let n = self.le(width)?;
                self.take(n)?;
                self.pushed(None);
            }
            b'I' | b'L' | b'F' | b'P' => {
                self.line()?;
                self.pushed(None);
            }
            b'p' => {
                let key = self.line()?.trim().parse().ok()?;
                self.memoize(key);
            }
            b'q' | b'r' => {
                let key = self.le(if op == b'q' { 1 } else { 4 })?;
                self.memoize(key);
            }
            0x94 => {
                let key = self.next_memo;
                self.next_memo += 1;
                self.memoize(key);
            }
            b'g' | b'h' | b'j' => {
                let key = match op {
                    b'g' => self.line()?.trim().parse().ok()?,
                    b'h' => self.le(1)?,
                    _ => self.le(4)?,
                };
                let s = self.memo.get(&key).cloned();
                self.pushed(s);
            }
            0x82..=0x84 => {
                self.le(match op {
                    0x82 => 1,
                    0x83 => 2,
                    _ => 4,
                })?;
                log.ops.ext += 1;
            }
            b'R' | 0x81 | 0x92 | b'o' => log.ops.calls += 1,
            b'b' => log.ops.builds += 1,
            b'K' | b'M' | b'J' | b'G' | 0x95 | 0x80 => {
                let width = match op {
                    b'M' => 2,
                    b'J' => 4,
                    b'G' | 0x95 => 8,
                    _ => 1,
                };
                self.le(width)?;
                if op != 0x95 && op != 0x80 {
                    self.pushed(None);
                }
            }
            b'('
            | b')'
            | b']'
            | b'}'
            | b'N'
            | b'0'
            | b'1'
            | b'2'
            | b'a'
            | b'e'
            | b's'
            | b'u'
            | b't'
            | b'l'
            | b'd'
            | b'Q'
            | 0x85..=0x89
            | 0x8f..=0x91
            | 0x97
            | 0x98 => self.pushed(None),
            _ => return None,
        }
        Some(())
    }
}
