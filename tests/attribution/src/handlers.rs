//! The routes: async handlers calling the leaks, leaking in their own bodies, or spawning a
//! task that does.

use std::sync::{LazyLock, Mutex};

use crate::leaks;

static REGISTRY: LazyLock<Mutex<leaks::Registry>> =
    LazyLock::new(|| Mutex::new(leaks::Registry::new()));
static IN_HANDLER: Mutex<Vec<Box<[u64]>>> = Mutex::new(Vec::new());
static IN_TASK: Mutex<Vec<String>> = Mutex::new(Vec::new());
static IN_NAMED_TASK: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub async fn vec() -> &'static str {
    leaks::plain_vec(16 * 1024);
    "ok"
}

pub async fn map() -> &'static str {
    REGISTRY.lock().unwrap().remember(16 * 1024);
    "ok"
}

pub async fn bytes() -> &'static str {
    let src = vec![7u8; 16 * 1024];
    leaks::copy_bytes(&src);
    "ok"
}

pub async fn json() -> &'static str {
    leaks::encode_json(16 * 1024);
    "ok"
}

/// Leaks in its own body, after an await (so the allocation is in the future's poll).
pub async fn leak_in_handler() -> &'static str {
    tokio::task::yield_now().await;
    let block: Box<[u64]> = (0..2048u64).collect();
    IN_HANDLER.lock().unwrap().push(block);
    "ok"
}

/// Spawns a task that leaks in its body.
pub async fn spawn() -> &'static str {
    let task = tokio::spawn(async {
        tokio::task::yield_now().await;
        let s = format!("{:>16384}", "task");
        IN_TASK.lock().unwrap().push(s);
    });
    task.await.unwrap();
    "ok"
}

/// Hands work to a task started with `diag_core::spawn("ingest", ..)`, which leaks it: with
/// `debug = false` its frames may name nothing of this crate, its `task` label still does.
pub async fn named_task() -> &'static str {
    let task = diag_core::spawn("ingest", async {
        tokio::task::yield_now().await;
        let s = format!("{:>16384}", "ingest");
        IN_NAMED_TASK.lock().unwrap().push(s);
    });
    task.await.unwrap();
    "ok"
}

/// Blocks its worker in a function it calls.
pub async fn block() -> &'static str {
    leaks::block_for(150);
    "ok"
}
