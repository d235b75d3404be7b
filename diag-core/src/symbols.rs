//! Turning what `backtrace` resolves into the profile model's frames: shared by the heap
//! profiler's symbolizer and the CPU profile conversion.

use crate::profile::Frame;

/// A frame from a resolved symbol at instruction address `addr`: the demangled name without
/// the hash suffix (or the address when there is no name), file and line when known.
pub(crate) fn frame(sym: &backtrace::Symbol, addr: usize) -> Frame {
    Frame {
        function: match sym.name() {
            Some(n) => format!("{n:#}"),
            None => format!("{addr:#x}"),
        },
        file: sym.filename().map(|p| p.display().to_string()),
        line: sym.lineno().unwrap_or(0),
        address: addr as u64,
    }
}

/// A frame for an address nothing resolved, named by the address as pprof does.
pub(crate) fn unknown(addr: usize) -> Frame {
    Frame {
        function: format!("{addr:#x}"),
        file: None,
        line: 0,
        address: addr as u64,
    }
}
