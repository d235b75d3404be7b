//! Names for addresses, read from files: ELF symbol tables ([`symtab`]), DWARF line tables and
//! inlined functions ([`dwarf`]), separate debug files found by GNU build ID, and the naming
//! rules that turn what they resolve into the profile model's frames ([`naming`]).
//!
//! Nothing here needs the allocator or a live process: the service names its stacks with it
//! (`stack::resolve`, over the images it has loaded), and the `diag` command names the
//! unsymbolized profiles a service serves with `?symbolize=0` or `DIAG_SYMBOLIZE=off`
//! ([`symbolize`], over the binaries and debug files a user has), with the same rules.

pub(crate) mod dwarf;
mod files;
pub(crate) mod mapped;
pub(crate) mod naming;
pub(crate) mod symtab;

#[cfg(feature = "heap")]
pub(crate) use files::code_hash;
pub use files::{EXE_CODE_COMMENT, Fetched, Outcome, Sources, build_id, symbolize};
