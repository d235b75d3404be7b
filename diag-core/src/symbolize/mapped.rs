//! Memory the symbolizer reads: image files mapped read-only (file-backed pages, which the
//! kernel can drop and read again, never anonymous copies), and anonymous buffers for the
//! debug sections an image stores compressed, unmapped as soon as they are dropped.

use std::path::Path;

/// A file mapped read-only, or an anonymous buffer, for as long as this lives.
pub(crate) struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    /// Maps the file at `path` read-only; None if it cannot be opened, is empty or cannot be
    /// mapped.
    pub(crate) fn open(path: &Path) -> Option<Mapped> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a private read-only mapping of an open file; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapped { ptr, len })
    }

    /// `len` zeroed bytes of anonymous memory, filled by `fill` (which says whether it
    /// succeeded); the pages go back to the system when this is dropped, not to the heap.
    pub(crate) fn anonymous(len: usize, fill: impl FnOnce(&mut [u8]) -> bool) -> Option<Mapped> {
        if len == 0 {
            return None;
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        let m = Mapped { ptr, len };
        // SAFETY: `len` writable bytes are mapped at `ptr`, and nothing else refers to them.
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
        fill(bytes).then_some(m)
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes are mapped at `ptr` until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

// SAFETY: the mapping is owned by this value alone and only read through `&self`; reading it
// from any thread is sound.
unsafe impl Send for Mapped {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for Mapped {}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open` or `anonymous`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
