//! The leaks, each in a function of its own shape. `#[inline(never)]` is not used: inlining
//! is what release builds do, and diag has to name the function anyway where the debug info
//! allows it.

use std::collections::HashMap;
use std::sync::Mutex;

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static BYTES: Mutex<Vec<bytes::Bytes>> = Mutex::new(Vec::new());
static JSON: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A plain function keeping a `Vec` it fills.
pub fn plain_vec(n: usize) {
    let mut v = Vec::with_capacity(n);
    v.extend((0..n).map(|i| i as u8));
    KEPT.lock().unwrap().push(v);
}

/// A map owned by a value, growing in one of its methods.
pub struct Registry {
    entries: HashMap<u64, String>,
    next: u64,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry {
            entries: HashMap::new(),
            next: 0,
        }
    }

    /// Remembers `len` bytes of text under a new key, forever.
    pub fn remember(&mut self, len: usize) {
        self.next += 1;
        self.entries.insert(self.next, "x".repeat(len));
    }
}

/// A leak through a dependency's constructor: `Bytes::copy_from_slice` allocates, this
/// function keeps what it returns.
pub fn copy_bytes(src: &[u8]) {
    let b = bytes::Bytes::copy_from_slice(src);
    BYTES.lock().unwrap().push(b);
}

/// The same through serde_json's serializer.
pub fn encode_json(n: usize) {
    let value = serde_json::json!({ "id": n, "payload": "y".repeat(n) });
    let out = serde_json::to_vec(&value).unwrap();
    JSON.lock().unwrap().push(out);
}

/// Burns `ms` milliseconds of a worker thread without yielding.
pub fn block_for(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms)); // workload: the blocking call
}
