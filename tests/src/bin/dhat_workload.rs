//! Runs the shared workload under `dhat::Alloc` and prints dhat's counts for it as JSON:
//! the reference that `tests/exact_mode_vs_dhat.rs` compares diag's exact mode against.

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    let kept = diag_tests::workload::workload();
    let after = dhat::HeapStats::get();
    let json = serde_json::json!({
        "total_blocks": after.total_blocks - before.total_blocks,
        "total_bytes": after.total_bytes - before.total_bytes,
        "curr_blocks": after.curr_blocks as i64 - before.curr_blocks as i64,
        "curr_bytes": after.curr_bytes as i64 - before.curr_bytes as i64,
    });
    println!("{json}");
    drop(kept);
}
