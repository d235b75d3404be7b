//! A store the framework examples share for their leaks: it keeps the blocks it is given
//! forever and counts their bytes exactly. The example allocates each block in its own
//! `#[inline(never)]` function, so the heap profile names that function
//! (`actix_shop::keep_upload`, `grpc_shop::keep_order`) as the leak's site, not this module.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Blocks kept forever, and their exact byte count.
pub struct Kept {
    blocks: Mutex<Vec<Vec<u8>>>,
    bytes: AtomicU64,
}

impl Kept {
    /// An empty store, for a `static`.
    pub const fn new() -> Self {
        Self {
            blocks: Mutex::new(Vec::new()),
            bytes: AtomicU64::new(0),
        }
    }

    /// Keeps `block` forever; returns its bytes (its capacity).
    pub fn keep(&self, block: Vec<u8>) -> usize {
        let n = block.capacity();
        self.blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(block);
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Bytes kept so far (exact).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Default for Kept {
    fn default() -> Self {
        Self::new()
    }
}
