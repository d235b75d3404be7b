use super::*;

#[test]
fn crate_roots() {
    assert_eq!(crate_root("myapp::db::query"), "myapp");
    assert_eq!(
        crate_root("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"),
        "alloc"
    );
    assert_eq!(
        crate_root("<myapp::Foo as core::clone::Clone>::clone"),
        "myapp"
    );
    assert_eq!(
        crate_root("<&mut myapp::Foo as core::fmt::Debug>::fmt"),
        "myapp"
    );
    assert_eq!(crate_root("<dyn myapp::Handler>::call"), "myapp");
    assert_eq!(
        crate_root("<[T] as alloc::slice::hack::ConvertVec>::to_vec"),
        "alloc"
    );
    assert_eq!(
        crate_root("<str as alloc::string::ToString>::to_string"),
        "alloc"
    );
    assert_eq!(crate_root("<u32 as myapp::Codec>::encode"), "myapp");
    assert_eq!(crate_root("<(A, B) as core::clone::Clone>::clone"), "core");
    assert_eq!(
        crate_root("<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec"),
        "core"
    );
    assert_eq!(crate_root("malloc"), "malloc");
    assert_eq!(crate_root(""), "");
}

#[test]
fn runtime_frames() {
    for f in [
        "alloc::raw_vec::RawVec<T,A>::with_capacity_in",
        "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
        "std::collections::hash::map::HashMap<K,V,S>::insert",
        "hashbrown::raw::RawTable<T,A>::reserve_rehash",
        "<diag_core::heap::DiagAlloc<A> as core::alloc::global::GlobalAlloc>::alloc",
        "<dhat::Alloc as core::alloc::global::GlobalAlloc>::alloc",
        "backtrace::backtrace::trace",
        "__rust_alloc",
        "__rdl_alloc",
        "__rg_realloc",
        "__rustc::__rust_alloc",
        // The shim named after the file of the `#[global_allocator]` line
        // (line-tables-only), with System, mimalloc or jemalloc inside.
        "myapp::__rust_alloc",
        "mi_leak::__rust_realloc",
        "myapp::server::__rdl_alloc",
        "malloc",
        "realloc",
        "_Unwind_Backtrace",
    ] {
        assert!(is_runtime(f), "{f} should be runtime");
    }
    for f in [
        "myapp::leak",
        "<myapp::Foo as core::clone::Clone>::clone",
        "myapp::handlers::upload::{{closure}}",
        "tokio::runtime::task::raw::poll",
        "stdx::thing",
        "mallocx",
        "0x1234",
    ] {
        assert!(!is_runtime(f), "{f} should be user code");
    }
}

#[test]
fn site_skips_runtime_frames() {
    let stack: Vec<Frame> = [
        "__rust_alloc",
        "alloc::alloc::alloc",
        "alloc::raw_vec::RawVec<T,A>::with_capacity_in",
        "alloc::vec::Vec<T>::with_capacity",
        "myapp::cache::fill",
        "myapp::main",
        "std::rt::lang_start",
    ]
    .into_iter()
    .map(Frame::named)
    .collect();
    assert_eq!(site_index(&stack), Some(4));
    assert_eq!(site(&stack).unwrap().function, "myapp::cache::fill");
}

const REG: &str = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
const RUSTC: &str = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";

fn at(function: &str, file: &str) -> Frame {
    Frame {
        function: function.to_owned(),
        file: (!file.is_empty()).then(|| file.to_owned()),
        line: 1,
        address: 0,
    }
}

#[test]
fn dependency_frames_fold_into_the_application_frame() {
    let stack = vec![
        at("myapp::__rust_alloc", "/src/myapp/src/main.rs"),
        at(
            "alloc::raw_vec::finish_grow",
            &format!("{RUSTC}/alloc/src/raw_vec/mod.rs"),
        ),
        at(
            "<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec",
            &format!("{RUSTC}/alloc/src/slice.rs"),
        ),
        at(
            "bytes::bytes::Bytes::copy_from_slice",
            &format!("{REG}/bytes-1.11.0/src/bytes.rs"),
        ),
        at("myapp::leaks::copy_bytes", "/src/myapp/src/leaks.rs"),
        at(
            "tokio::runtime::task::raw::poll",
            &format!("{REG}/tokio-1.48.0/src/runtime/task/raw.rs"),
        ),
    ];
    let rules = SiteRules::for_stacks([stack.as_slice()]);
    assert_eq!(rules.app_crates().collect::<Vec<_>>(), ["myapp"]);
    let kinds: Vec<FrameKind> = stack.iter().map(|f| rules.kind(f)).collect();
    use FrameKind::*;
    assert_eq!(
        kinds,
        [Runtime, Runtime, Runtime, Dependency, App, Dependency]
    );
    let site = rules.site(&stack).unwrap();
    assert_eq!((site.index, site.app), (4, true));
    assert_eq!(site.name, "myapp::leaks::copy_bytes");
    // The name-only rule, for comparison, stops at the dependency's constructor.
    assert_eq!(site_index(&stack), Some(3));
    assert!(is_runtime("<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec"));
}

#[test]
fn without_files_the_application_crates_decide() {
    // `debug = false`: names from the symbol table, no files.
    let stack: Vec<Frame> = [
        "__rust_alloc",
        "bytes::bytes::Bytes::copy_from_slice",
        "myapp::leaks::copy_bytes",
        "<F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}",
    ]
    .into_iter()
    .map(Frame::named)
    .collect();
    // No evidence of what the application is: every non-runtime frame counts (the rule
    // for other tools' profiles).
    let none = SiteRules::default();
    assert_eq!(
        none.site(&stack).unwrap().name,
        "bytes::bytes::Bytes::copy_from_slice"
    );
    // The binary's crate recorded in the profile (or given with --app-crates).
    let rules = SiteRules::default().with_app_crates(["myapp"]);
    assert_eq!(rules.site(&stack).unwrap().name, "myapp::leaks::copy_bytes");
    // A package name is taken as its crate's.
    let rules = SiteRules::default().with_app_crates(["my-app", " "]);
    assert_eq!(rules.app_crates().collect::<Vec<_>>(), ["my_app"]);
}

#[test]
fn stacks_without_an_application_frame_get_a_marked_site() {
    let rules = SiteRules::default().with_app_crates(["myapp"]);
    let stack: Vec<Frame> = [
        "__rust_alloc",
        "alloc::raw_vec::RawVec<T,A>::grow_one",
        "__GI___clock_nanosleep",
        "tokio::runtime::task::core::Core<T,S>::poll",
        "tokio::runtime::scheduler::multi_thread::worker::Context::run",
        "start_thread",
    ]
    .into_iter()
    .map(Frame::named)
    .collect();
    let site = rules.site(&stack).unwrap();
    assert!(!site.app);
    assert_eq!(site.index, 3);
    assert_eq!(
        site.name,
        "[no application frame] tokio::runtime::task::core::Core<T,S>::poll"
    );
    // All runtime: the outermost frame, marked as well.
    let stack: Vec<Frame> = ["malloc", "std::rt::lang_start"]
        .into_iter()
        .map(Frame::named)
        .collect();
    let site = rules.site(&stack).unwrap();
    assert_eq!((site.index, site.app), (1, false));
    assert_eq!(site.name, "[no application frame] std::rt::lang_start");
    assert_eq!(rules.site(&[]), None);
}

#[test]
fn profiles_record_the_application_crates() {
    let mut p = crate::profile::Profile::default();
    p.samples.push(crate::profile::Sample {
        stack: vec![Frame::named("bytes::Bytes::new"), Frame::named("svc::run")],
        values: vec![1],
        labels: Vec::new(),
    });
    assert_eq!(
        SiteRules::for_profile(&p)
            .site(&p.samples[0].stack)
            .unwrap()
            .name,
        "bytes::Bytes::new"
    );
    p.comments.push(format!("{APP_CRATES_COMMENT}=svc,svc_db"));
    let rules = SiteRules::for_profile(&p);
    assert_eq!(rules.app_crates().collect::<Vec<_>>(), ["svc", "svc_db"]);
    assert_eq!(rules.site(&p.samples[0].stack).unwrap().name, "svc::run");
}

#[test]
fn short_names_elide_generic_arguments_and_bodies() {
    for (full, short) in [
        ("myapp::cache::insert", "myapp::cache::insert"),
        (
            "tokio::loom::std::unsafe_cell::with_mut<tokio::runtime::task::core::Stage<F>, core::task::poll::Poll<()>>",
            "tokio::loom::std::unsafe_cell::with_mut",
        ),
        (
            "<alloc::vec::Vec<T,A> as core::clone::Clone>::clone",
            "<alloc::vec::Vec as core::clone::Clone>::clone",
        ),
        ("myapp::parse::<u8>", "myapp::parse"),
        ("myapp::a::<u8>::b", "myapp::a::b"),
        (
            "myapp::handlers::reconcile::{async_fn#0}",
            "myapp::handlers::reconcile",
        ),
        ("myapp::run::{{closure}}::{{closure}}", "myapp::run"),
        (
            "<F as axum::handler::Handler<((),),S>>::call::{{closure}}",
            "<F as axum::handler::Handler>::call",
        ),
        (
            "core::ops::function::FnOnce::call_once<fn() -> u8, ()>",
            "core::ops::function::FnOnce::call_once",
        ),
        (
            "[no application frame] tokio::runtime::task::raw::poll<F, S>",
            "[no application frame] tokio::runtime::task::raw::poll",
        ),
        ("malloc", "malloc"),
        ("{closure#0}", "{closure#0}"),
    ] {
        assert_eq!(short_name(full), short, "{full}");
    }
}

#[test]
fn all_runtime_stack_uses_outermost() {
    let stack: Vec<Frame> = ["malloc", "std::rt::lang_start"]
        .into_iter()
        .map(Frame::named)
        .collect();
    assert_eq!(site_index(&stack), Some(1));
    assert_eq!(site_index(&[]), None);
}
