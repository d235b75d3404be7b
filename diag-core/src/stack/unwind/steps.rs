//! The step cache: each return address's unwind step reduced to two offsets, kept in a
//! table (sets of two) in front of framehop.
//!
//! framehop's own rule cache returns a rule that still has to be executed, and its most common
//! rule on x86-64 (pop the saved callee registers, then return) decodes the order of those
//! registers with a loop of divisions on every frame: about 230 instructions a frame here.
//! A caller of the unwinder only needs the new stack pointer, the new frame pointer and the
//! return address, so a step here is just that: `sp' = sp + k` (or `bp + 16`), `bp'` unchanged
//! or read from one stack slot, and the return address read from `sp' - 8`. Executing it is a
//! table probe and two or three bounds-checked stack reads.
//!
//! A step is learnt from framehop itself, never from the CFI directly: the frame is unwound
//! twice against a synthetic stack (every word holds its own address, tagged), from two
//! unrelated register states, and the step is kept only if it explains both results exactly.
//! An address whose unwinding depends on anything else (a CFA computed from another register,
//! a DWARF expression) is marked [`Step::Framehop`], and a walk that meets it starts over with
//! framehop's own iterator, which tracks every register.

use framehop::x86_64::UnwindRegsX86_64;
use framehop::{FrameAddress, Unwinder as _};

use super::modules::Fast;

/// Entries in one table (a power of two), in sets of [`WAYS`]: 24 KiB.
const ENTRIES: usize = 1024;
/// Entries per set: an address can live in either, so two return addresses that hash alike
/// (a direct-mapped table of this size had such a pair on about one stack in five) do not
/// evict each other on every capture.
const WAYS: usize = 2;

/// Tag in the high bits of every word of the synthetic stack, so a value read from it names
/// the address it came from and cannot be mistaken for a register value.
const TAG: u64 = 0x5ead_0000_0000_0000;
/// The largest stack-pointer offset a step may have (a frame of 1 MiB).
const MAX_OFFSET: u64 = 1 << 20;
/// The two register states (`sp`, `bp`) a step is learnt from: unrelated to each other and
/// to real stacks, `bp` above `sp` as a frame pointer must be.
const PROBES: [(u64, u64); 2] = [
    (0x0000_1000_0000_0000, 0x0000_2000_0000_0000),
    (0x0000_3456_7800_0000, 0x0000_4567_8000_0000),
];

/// What unwinding one frame does to the registers, as learnt from framehop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// `sp' = sp + sp_off`; `bp'` is the word at `sp + bp_at` if given, else `bp`.
    Sp { sp_off: u32, bp_at: Option<u32> },
    /// Frame pointer: `sp' = bp + 16`, `bp'` is the word at `bp`.
    Fp,
    /// The CFI marks the end of the stack.
    End,
    /// Not expressible as a step: unwind this stack with framehop alone.
    Framehop,
}

/// What executing a step gave.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// The caller's return address (the registers now describe the caller).
    Frame(u64),
    /// The stack ended.
    End,
    /// The step cannot be taken (unreadable stack, no progress): the stack is not vouched for.
    Failed,
    /// The address needs framehop's full register tracking.
    Framehop,
}

#[derive(Clone, Copy)]
struct Entry {
    /// The lookup address (return address - 1); 0 = empty.
    addr: u64,
    step: Step,
}

/// One table of learnt steps, valid for one module set.
pub(super) struct Steps {
    /// The loader generation of the module set the entries were learnt for.
    generation: (u64, u64),
    entries: [Entry; ENTRIES],
    hits: u64,
    misses: u64,
}

impl Steps {
    pub(super) fn new() -> Self {
        Self {
            generation: (u64::MAX, u64::MAX),
            entries: [Entry {
                addr: 0,
                step: Step::Framehop,
            }; ENTRIES],
            hits: 0,
            misses: 0,
        }
    }

    /// (hits, misses) so far.
    pub(super) fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Forgets every entry unless they were learnt for `generation`.
    pub(super) fn use_generation(&mut self, generation: (u64, u64)) {
        if self.generation != generation {
            self.entries.iter_mut().for_each(|e| e.addr = 0);
            self.generation = generation;
        }
    }

    /// The first entry of the set for lookup address `addr` (a multiplicative hash: return
    /// addresses differ mostly in their low bits).
    #[inline]
    fn set(addr: u64) -> usize {
        const SETS: usize = ENTRIES / WAYS;
        let h = addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SETS.trailing_zeros());
        h as usize * WAYS
    }

    /// The step for the frame whose return address is `ra`, learnt from `unwinder` (with its
    /// `cache`) on a miss; the newest entry of a set is kept first.
    #[inline]
    pub(super) fn step_for(
        &mut self,
        ra: u64,
        unwinder: &Fast,
        cache: &mut super::cached::Cache,
    ) -> Step {
        let key = ra.wrapping_sub(1);
        let set = &mut self.entries[Self::set(key)..][..WAYS];
        if key != 0
            && let Some(e) = set.iter().find(|e| e.addr == key)
        {
            self.hits += 1;
            return e.step;
        }
        self.misses += 1;
        let step = learn(ra, unwinder, cache);
        set.rotate_right(1);
        set[0] = Entry { addr: key, step };
        step
    }
}

/// Unwinds the frame of return address `ra` from each probe state over the synthetic stack
/// and returns the one step that explains both, or [`Step::Framehop`].
fn learn(ra: u64, unwinder: &Fast, cache: &mut super::cached::Cache) -> Step {
    let Some(addr) = FrameAddress::from_return_address(ra) else {
        return Step::Framehop;
    };
    let mut learnt = None;
    for (sp, bp) in PROBES {
        let mut regs = UnwindRegsX86_64::new(ra, sp, bp);
        let mut synthetic = |a: u64| Ok(a ^ TAG);
        let step = match unwinder.unwind_frame(addr, &mut regs, cache, &mut synthetic) {
            Ok(None) => Step::End,
            Ok(Some(next)) => explain((sp, bp), (regs.sp(), regs.bp()), next),
            Err(_) => Step::Framehop,
        };
        if step == Step::Framehop || learnt.is_some_and(|l| l != step) {
            return Step::Framehop;
        }
        learnt = Some(step);
    }
    learnt.unwrap_or(Step::Framehop)
}

/// The step that takes `(sp, bp)` to `(new_sp, new_bp)` with return address `ra`, all read
/// from the synthetic stack; [`Step::Framehop`] if there is none.
fn explain((sp, bp): (u64, u64), (new_sp, new_bp): (u64, u64), ra: u64) -> Step {
    // The return address must be the word just below the new stack pointer.
    if ra ^ TAG != new_sp.wrapping_sub(8) {
        return Step::Framehop;
    }
    let sp_off = new_sp.wrapping_sub(sp);
    if sp_off > 0 && sp_off < MAX_OFFSET {
        let bp_at = if new_bp == bp {
            None
        } else {
            match (new_bp ^ TAG).wrapping_sub(sp) {
                at if at < MAX_OFFSET => Some(at as u32),
                _ => return Step::Framehop,
            }
        };
        return Step::Sp {
            sp_off: sp_off as u32,
            bp_at,
        };
    }
    if new_sp == bp.wrapping_add(16) && new_bp ^ TAG == bp {
        return Step::Fp;
    }
    Step::Framehop
}

impl Step {
    /// Unwinds one frame from `(ip, sp, bp)` in place, reading the stack with `read` (which
    /// refuses addresses outside the stack); the same checks as framehop's rules.
    #[inline]
    pub(super) fn exec(
        self,
        regs: &mut (u64, u64, u64),
        read: &mut impl FnMut(u64) -> Result<u64, ()>,
    ) -> Next {
        let (ip, sp, bp) = *regs;
        let (new_sp, new_bp) = match self {
            Step::End => return Next::End,
            Step::Framehop => return Next::Framehop,
            Step::Sp { sp_off, bp_at } => {
                let new_bp = match bp_at {
                    None => bp,
                    Some(at) => match read(sp.wrapping_add(u64::from(at))) {
                        Ok(v) => v,
                        Err(()) => return Next::Failed,
                    },
                };
                (sp.wrapping_add(u64::from(sp_off)), new_bp)
            }
            Step::Fp => {
                if bp == 0 {
                    return Next::End;
                }
                let new_sp = bp.wrapping_add(16);
                if new_sp <= sp {
                    return Next::Failed;
                }
                match read(bp) {
                    Ok(v) => (new_sp, v),
                    Err(()) => return Next::Failed,
                }
            }
        };
        let Ok(ra) = read(new_sp.wrapping_sub(8)) else {
            return Next::Failed;
        };
        if ra == 0 {
            return Next::End;
        }
        if new_sp == sp && ra == ip {
            return Next::Failed;
        }
        *regs = (ra, new_sp, new_bp);
        Next::Frame(ra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_the_rule_shapes() {
        let (sp, bp) = PROBES[0];
        // pop two registers after 3 words of locals, bp not among them: sp + 48.
        assert_eq!(
            explain((sp, bp), (sp + 48, bp), (sp + 40) ^ TAG),
            Step::Sp {
                sp_off: 48,
                bp_at: None
            }
        );
        // bp saved at sp + 24.
        assert_eq!(
            explain((sp, bp), (sp + 48, (sp + 24) ^ TAG), (sp + 40) ^ TAG),
            Step::Sp {
                sp_off: 48,
                bp_at: Some(24)
            }
        );
        assert_eq!(
            explain((sp, bp), (bp + 16, bp ^ TAG), (bp + 8) ^ TAG),
            Step::Fp
        );
        // A return address not read from just below the new sp, a CFA from another register,
        // a bp from outside the frame: none is a step.
        assert_eq!(
            explain((sp, bp), (sp + 48, bp), (sp + 32) ^ TAG),
            Step::Framehop
        );
        assert_eq!(explain((sp, bp), (16, bp), 8 ^ TAG), Step::Framehop);
        assert_eq!(
            explain((sp, bp), (sp + 48, 12345), (sp + 40) ^ TAG),
            Step::Framehop
        );
    }

    #[test]
    fn exec_follows_framehop_semantics() {
        // A stack at 0x1000..0x1100, one word per address / 8.
        let stack: Vec<u64> = (0..32).map(|i| 0x1000 + i * 8).collect();
        let mut read = |a: u64| {
            if (0x1000..0x1100).contains(&a) {
                Ok(stack[((a - 0x1000) / 8) as usize] + 0x5000)
            } else {
                Err(())
            }
        };
        let mut regs = (0x400, 0x1000, 0x1080);
        let s = Step::Sp {
            sp_off: 16,
            bp_at: Some(0),
        };
        assert_eq!(s.exec(&mut regs, &mut read), Next::Frame(0x1008 + 0x5000));
        assert_eq!(regs, (0x6008, 0x1010, 0x6000));
        // Frame pointer below the stack pointer: no progress.
        let mut regs = (0x400, 0x1040, 0x1000);
        assert_eq!(Step::Fp.exec(&mut regs, &mut read), Next::Failed);
        // Reads outside the stack fail.
        let mut regs = (0x400, 0x10f8, 0);
        let s = Step::Sp {
            sp_off: 64,
            bp_at: None,
        };
        assert_eq!(s.exec(&mut regs, &mut read), Next::Failed);
        assert_eq!(Step::End.exec(&mut regs, &mut read), Next::End);
    }
}
