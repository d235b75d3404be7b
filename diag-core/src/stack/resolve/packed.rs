//! The symbolizer's resolved addresses kept between requests, packed (see [`Packed`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::profile::Frame;

/// Resolved addresses in three blocks: an index, the frames, and their strings. Kept between
/// requests in place of the per-address `Arc<[Frame]>`s, whose many small blocks, allocated
/// among a cold request's DWARF parse, pinned its freed pages (a kept 1.2 MiB held +19 MiB of
/// RssAnon on a 114 MB binary); without them every request on such a binary is cold (its
/// units' headers alone are over the bound), and `/debug/tasks` took seconds each time.
#[derive(Default)]
pub(super) struct Packed {
    /// Return address -> its frames' range in `frames`.
    pub(super) index: HashMap<usize, (u32, u32)>,
    frames: Vec<PackedFrame>,
    text: String,
}

/// A frame of [`Packed`]: its strings as ranges of `Packed::text`.
struct PackedFrame {
    function: (u32, u32),
    file: Option<(u32, u32)>,
    line: u32,
    address: u64,
}

impl Packed {
    /// These and `more` packed anew, in blocks of exactly their size.
    pub(super) fn with(self, more: &HashMap<usize, Arc<[Frame]>>) -> Packed {
        let mut all: Vec<(usize, Vec<Frame>)> = self
            .index
            .keys()
            .filter(|a| !more.contains_key(a))
            .filter_map(|&a| Some((a, self.get(a)?)))
            .collect();
        all.extend(more.iter().map(|(&a, f)| (a, f.to_vec())));
        let frames: usize = all.iter().map(|(_, f)| f.len()).sum();
        let text: usize = all
            .iter()
            .flat_map(|(_, f)| f)
            .map(|f| f.function.len() + f.file.as_ref().map_or(0, String::len))
            .sum();
        let mut out = Packed {
            index: HashMap::with_capacity(all.len()),
            frames: Vec::with_capacity(frames),
            text: String::with_capacity(text),
        };
        let put = |s: &str, text: &mut String| {
            let at = text.len() as u32;
            text.push_str(s);
            (at, s.len() as u32)
        };
        for (a, fs) in all {
            let start = out.frames.len() as u32;
            for f in fs {
                let function = put(&f.function, &mut out.text);
                let file = f.file.as_deref().map(|s| put(s, &mut out.text));
                out.frames.push(PackedFrame {
                    function,
                    file,
                    line: f.line,
                    address: f.address,
                });
            }
            out.index.insert(a, (start, out.frames.len() as u32));
        }
        out
    }

    /// The frames of return address `addr`, if packed.
    pub(super) fn get(&self, addr: usize) -> Option<Vec<Frame>> {
        let &(start, end) = self.index.get(&addr)?;
        let s = |(at, len): (u32, u32)| self.text[at as usize..(at + len) as usize].to_owned();
        Some(
            self.frames[start as usize..end as usize]
                .iter()
                .map(|f| Frame {
                    function: s(f.function),
                    file: f.file.map(s),
                    line: f.line,
                    address: f.address,
                })
                .collect(),
        )
    }

    /// The bytes its blocks hold.
    pub(super) fn bytes(&self) -> usize {
        self.index.capacity() * (std::mem::size_of::<(usize, (u32, u32))>() + 1)
            + self.frames.capacity() * std::mem::size_of::<PackedFrame>()
            + self.text.capacity()
    }
}
