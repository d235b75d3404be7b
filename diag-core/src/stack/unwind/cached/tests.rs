use super::*;

/// The learnt steps unwind exactly as framehop alone does, frame for frame, on stacks
/// through std's thread start and a recursion, from the first walk (steps learnt) and
/// the second (steps found).
#[test]
fn steps_match_framehop() {
    #[inline(never)]
    fn at_depth(depth: u32) {
        if depth > 0 {
            at_depth(std::hint::black_box(depth - 1));
            std::hint::black_box(depth);
            return;
        }
        let regs = registers();
        let bounds = stack_bounds().expect("stack bounds");
        let guard = modules(loader_generation()).expect("module table");
        let m = guard.as_ref().expect("module table");
        let mut caches = new_cache();
        caches.steps.use_generation(m.generation());
        let expected = {
            let mut b = [0; MAX_FRAMES];
            let read = reader(regs.1, bounds.1);
            let n = walk_framehop(
                m,
                &mut caches.rules,
                regs,
                false,
                &mut b,
                |a| m.knows(a),
                read,
            );
            assert!(n.complete, "framehop walk stopped early");
            b[..n.frames].to_vec()
        };
        assert!(expected.len() > depth as usize + 3, "{expected:x?}");
        for round in 0..2 {
            let mut a = [0; MAX_FRAMES];
            let mut read = reader(regs.1, bounds.1);
            let before = caches.steps.stats();
            let got = walk_steps(
                m,
                &mut caches,
                regs,
                false,
                &mut a,
                &mut |a| m.knows(a),
                &mut read,
            );
            let Ok(Walk {
                frames: n,
                complete: true,
            }) = got
            else {
                panic!("round {round}: the steps did not walk the stack");
            };
            assert_eq!(a[..n], expected[..], "round {round}");
            let after = caches.steps.stats();
            if round == 1 {
                // Every step was learnt in round 1; round 2 finds them, but for the
                // addresses of a set that got three of them (about one stack in 200).
                let (hits, misses) = (after.0 - before.0, after.1 - before.1);
                assert!(misses <= 3, "round 2 learnt {misses} steps again");
                assert!(hits + 4 >= expected.len() as u64, "{hits} hits");
            }
        }
    }
    let _serial = super::super::SERIAL
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for depth in [0, 7] {
        at_depth(depth);
    }
    std::thread::spawn(|| at_depth(3)).join().unwrap();
}

/// In a signal handler, the cached unwinder's stack of the interrupted code equals
/// libgcc's from the interrupted instruction on, frame for frame.
#[cfg(feature = "cpu")]
#[test]
fn signal_context_stacks_match_libgcc() {
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::*};
    const N: usize = 64;
    static CACHED: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
    static LIBGCC: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
    static DEPTHS: [AtomicUsize; 2] = [const { AtomicUsize::new(usize::MAX) }; 2];
    static DONE: AtomicBool = AtomicBool::new(false);
    static TID: AtomicI32 = AtomicI32::new(0);

    extern "C" fn handler(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        let mut a = [0usize; N];
        // SAFETY: ctx is this handler's context.
        let n = unsafe { capture_interrupted(ctx.cast(), &mut a) }.unwrap_or(0);
        // SAFETY: as above.
        let pc = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs }
            [libc::REG_RIP as usize] as usize;
        let (mut b, mut m) = ([0usize; N], 0);
        // SAFETY: the target thread is not inside libgcc (it spins in plain code).
        unsafe {
            super::super::walk(|ip| {
                b[m] = ip;
                m += 1;
                m < N
            })
        };
        let at = b[..m].iter().position(|&ip| ip == pc).unwrap_or(m);
        for (i, f) in a[..n].iter().enumerate() {
            CACHED[i].store(*f, Relaxed);
        }
        for (i, f) in b[at..m].iter().enumerate() {
            LIBGCC[i].store(*f, Relaxed);
        }
        DEPTHS[0].store(n, Relaxed);
        DEPTHS[1].store(m - at, Relaxed);
        DONE.store(true, Release);
    }

    #[inline(never)]
    fn spin_here(depth: u32) {
        if depth > 0 {
            spin_here(std::hint::black_box(depth - 1));
            std::hint::black_box(depth);
            return;
        }
        while !DONE.load(Acquire) {
            std::hint::spin_loop();
        }
    }

    let _serial = super::super::SERIAL
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    prepare_signals();
    let sig = libc::SIGRTMIN() + 9;
    // SAFETY: a zeroed sigaction with our handler; the signal is otherwise unused by
    // this test binary (diag's own watchdog uses SIGRTMIN+6).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(sig, &act, std::ptr::null_mut()), 0);
    }
    let t = std::thread::spawn(|| {
        prepare_thread();
        // SAFETY: gettid has no preconditions.
        TID.store(unsafe { libc::syscall(libc::SYS_gettid) } as i32, Release);
        spin_here(5);
    });
    while TID.load(Acquire) == 0 {
        std::thread::yield_now();
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    // SAFETY: signals one thread of this process, which has the handler installed.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), TID.load(Acquire), sig) };
    t.join().unwrap();
    let (n, m) = (DEPTHS[0].load(Relaxed), DEPTHS[1].load(Relaxed));
    let cached: Vec<usize> = CACHED[..n].iter().map(|f| f.load(Relaxed)).collect();
    let libgcc: Vec<usize> = LIBGCC[..m].iter().map(|f| f.load(Relaxed)).collect();
    assert!(n > 6, "cached unwinder gave {n} frames: {cached:x?}");
    assert_eq!(cached, libgcc);
}
