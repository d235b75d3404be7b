//! Import of dhat-rs heap profiles (`dhat-heap.json`).
//!
//! dhat-rs writes one record per program point (`pps`), each with totals over the run
//! (`tb`/`tbk`: bytes/blocks ever allocated) and the state at exit (`eb`/`ebk`: bytes/blocks
//! still live), and a frame table (`ftbl`) of strings like
//! `0x55d1c3a: myapp::leak (src/main.rs:12:5)`. Each record's `fs` lists frame-table indices
//! innermost first (backtrace order), the same order as [`Sample::stack`].
//!
//! They map onto Go's heap layout: `tbk` -> `alloc_objects`, `tb` -> `alloc_space`,
//! `ebk` -> `inuse_objects`, `eb` -> `inuse_space` (the default). Valgrind DHAT's `heap` mode
//! files share the layout and are accepted too; ad-hoc and copy mode files are refused.

use serde::Deserialize;

use super::model::{Frame, Profile, Sample, ValueType};
use super::pprof_codec;
use crate::error::{Error, Result};

/// The frame dhat puts at index 0 of `ftbl`, above every stack; it is not a real frame.
const ROOT_FRAME: &str = "[root]";

#[derive(Deserialize)]
struct DhatFile {
    #[serde(rename = "dhatFileVersion")]
    version: Option<u64>,
    mode: Option<String>,
    #[serde(default)]
    cmd: Option<String>,
    #[serde(default)]
    pid: Option<u64>,
    /// Time at the end of the run, in `tu` units (microseconds for dhat-rs).
    #[serde(default)]
    te: Option<u64>,
    #[serde(default)]
    tu: Option<String>,
    #[serde(default)]
    pps: Option<Vec<ProgramPoint>>,
    #[serde(default)]
    ftbl: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ProgramPoint {
    tb: u64,
    tbk: u64,
    #[serde(default)]
    eb: Option<u64>,
    #[serde(default)]
    ebk: Option<u64>,
    fs: Vec<usize>,
}

/// True if `bytes` (already decompressed) look like JSON rather than protobuf.
pub fn looks_like_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// Decodes a dhat-rs (or Valgrind DHAT) heap-mode JSON profile.
pub fn decode(bytes: &[u8]) -> Result<Profile> {
    let file: DhatFile = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Error::decode(format!("not valid JSON: {e}"))
        } else {
            Error::decode(format!("JSON is not a dhat profile: {e}"))
        }
    })?;
    let (Some(version), Some(mode)) = (file.version, file.mode.as_deref()) else {
        return Err(Error::decode(
            "JSON is not a dhat profile: it has no `dhatFileVersion` and `mode`",
        ));
    };
    match mode {
        "rust-heap" | "heap" => {}
        "rust-ad-hoc" | "ad-hoc" => {
            return Err(Error::decode(
                "this dhat profile is in ad-hoc mode; only heap mode profiles \
                 (dhat::Profiler::new_heap) can be loaded",
            ));
        }
        other => {
            return Err(Error::decode(format!(
                "unsupported dhat mode {other:?}; only heap mode profiles can be loaded"
            )));
        }
    }
    if version != 2 {
        return Err(Error::decode(format!(
            "unsupported dhatFileVersion {version} (expected 2)"
        )));
    }
    let (Some(pps), Some(ftbl)) = (file.pps, file.ftbl) else {
        return Err(Error::decode(
            "dhat profile is missing its `pps` or `ftbl` table",
        ));
    };

    let frames: Vec<Option<Frame>> = ftbl.iter().map(|s| parse_frame(s)).collect();
    // Program points repeat frames, so a small file can describe a huge model: bound its size
    // before building any of it.
    let model_bytes = pps
        .iter()
        .flat_map(|pp| &pp.fs)
        .filter_map(|&i| frames.get(i)?.as_ref().map(pprof_codec::frame_cost))
        .fold(0u64, u64::saturating_add);
    if model_bytes > pprof_codec::MAX_DECODED_BYTES {
        return Err(Error::decode(format!(
            "profile is larger than {} bytes once its stacks are expanded",
            pprof_codec::MAX_DECODED_BYTES
        )));
    }
    let mut samples = Vec::with_capacity(pps.len());
    for (n, pp) in pps.iter().enumerate() {
        let mut stack = Vec::with_capacity(pp.fs.len());
        for &i in &pp.fs {
            let frame = frames.get(i).ok_or_else(|| {
                Error::decode(format!(
                    "dhat program point {n} names frame {i}, but ftbl has {} entries",
                    frames.len()
                ))
            })?;
            if let Some(frame) = frame {
                stack.push(frame.clone());
            }
        }
        samples.push(Sample {
            stack,
            values: vec![
                to_i64(pp.tbk),
                to_i64(pp.tb),
                to_i64(pp.ebk.unwrap_or(0)),
                to_i64(pp.eb.unwrap_or(0)),
            ],
            labels: Vec::new(),
        });
    }

    let mut comments = vec![format!("source=dhat ({mode})")];
    if let Some(cmd) = file.cmd.filter(|c| !c.is_empty()) {
        comments.push(format!("cmd={cmd}"));
    }
    if let Some(pid) = file.pid {
        comments.push(format!("pid={pid}"));
    }
    let micros = matches!(file.tu.as_deref(), Some("µs" | "us") | None);
    Ok(Profile {
        sample_types: crate::profile::heap_sample_types(),
        samples,
        period_type: Some(ValueType::new("space", "bytes")),
        // dhat records every allocation: no sampling.
        period: 1,
        time_nanos: 0,
        duration_nanos: match (file.te, micros) {
            (Some(te), true) => to_i64(te).saturating_mul(1000),
            _ => 0,
        },
        default_sample_type: Some("inuse_space".to_owned()),
        comments,
        // dhat's file has no address ranges.
        mappings: Vec::new(),
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Parses one `ftbl` entry: `0x55d1c3a: myapp::leak (src/main.rs:12:5)`. Also accepted:
/// no address, no location, `???` for unknown parts, Valgrind's `(in /lib/libc.so.6)`.
/// `[root]` gives `None`.
fn parse_frame(s: &str) -> Option<Frame> {
    let s = s.trim();
    if s == ROOT_FRAME {
        return None;
    }
    let (address, rest) = match s.split_once(": ") {
        Some((addr, rest)) if addr.starts_with("0x") => (
            u64::from_str_radix(&addr[2..], 16).unwrap_or(0),
            rest.trim(),
        ),
        _ => (0, s),
    };
    let mut frame = Frame {
        function: rest.to_owned(),
        file: None,
        line: 0,
        address,
    };
    if let Some(inner) = rest.strip_suffix(')')
        && let Some(open) = location_start(inner)
    {
        frame.function = inner[..open].trim().to_owned();
        if let Some((file, line)) = parse_location(&inner[open + 2..]) {
            frame.file = file;
            frame.line = line;
        }
    }
    Some(frame)
}

/// Where the ` (location` part of `name (location` starts: the first ` (` after a name whose
/// brackets are balanced, so `<(A, B) as T>::f (src/x (1).rs:3:1)` splits after `::f`.
fn location_start(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '(' if prev == ' ' && depth == 0 && i > 0 => return Some(i - 1),
            '<' | '(' | '[' | '{' => depth += 1,
            '>' if prev == '-' => {}
            '>' | ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        prev = c;
    }
    None
}

/// `src/main.rs:12:5` or `main.c:12` -> file and line; `???:0:0` -> no file.
fn parse_location(location: &str) -> Option<(Option<String>, u32)> {
    if location.starts_with("in ") {
        return None;
    }
    let mut parts = location.rsplitn(3, ':');
    let last = parts.next()?;
    let mid = parts.next()?;
    let (file, line) = match parts.next() {
        Some(file) if last.parse::<u32>().is_ok() && mid.parse::<u32>().is_ok() => {
            (file, mid.parse::<u32>().ok()?)
        }
        _ => {
            // Only `file:line`: the file is everything before the last colon.
            let (file, line) = location.rsplit_once(':')?;
            (file, line.parse::<u32>().ok()?)
        }
    };
    let file = (!file.is_empty() && file != "???").then(|| file.to_owned());
    Some((file, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn sample_json(mode: &str) -> String {
        format!(
            r#"{{"dhatFileVersion":2,"mode":"{mode}","verb":"Allocated","bklt":true,"bkacc":false,
            "tu":"µs","Mtu":"s","tuth":10,"cmd":"myapp","pid":42,"tg":10,"te":2000,
            "pps":[
              {{"tb":1000,"tbk":2,"tl":5,"mb":1000,"mbk":2,"gb":1000,"gbk":2,"eb":600,"ebk":1,"fs":[1,2,3]}},
              {{"tb":50,"tbk":5,"tl":5,"mb":10,"mbk":1,"gb":0,"gbk":0,"eb":0,"ebk":0,"fs":[1,4]}}
            ],
            "ftbl":["[root]",
              "0x10: alloc::raw_vec::RawVec<T,A>::with_capacity_in (alloc/src/raw_vec.rs:131:9)",
              "0x20: myapp::leak (src/main.rs:12:5)",
              "0x30: <(A, B) as myapp::Foo>::go (src/x (copy).rs:3:1)",
              "0x40: ??? (???:0:0)"]}}"#
        )
    }

    #[test]
    fn decodes_heap_mode() {
        let p = decode(sample_json("rust-heap").as_bytes()).unwrap();
        assert_eq!(p.sample_types.len(), 4);
        assert_eq!(p.default_sample_type.as_deref(), Some("inuse_space"));
        assert_eq!(p.samples.len(), 2);
        let s = &p.samples[0];
        assert_eq!(s.values, vec![2, 1000, 1, 600]);
        assert_eq!(s.stack.len(), 3);
        assert_eq!(s.stack[1].function, "myapp::leak");
        assert_eq!(s.stack[1].file.as_deref(), Some("src/main.rs"));
        assert_eq!(s.stack[1].line, 12);
        assert_eq!(s.stack[1].address, 0x20);
        assert_eq!(s.stack[2].function, "<(A, B) as myapp::Foo>::go");
        assert_eq!(s.stack[2].file.as_deref(), Some("src/x (copy).rs"));
        assert_eq!(p.samples[1].stack[1].function, "???");
        assert_eq!(p.samples[1].stack[1].file, None);
        assert_eq!(p.duration_nanos, 2_000_000);
        assert_eq!(p.comment_value("pid"), Some("42"));
    }

    #[test]
    fn refuses_ad_hoc_and_non_dhat_json() {
        for (input, want) in [
            (sample_json("rust-ad-hoc"), "ad-hoc"),
            (sample_json("copy"), "unsupported dhat mode"),
            (r#"{"sites": []}"#.to_owned(), "not a dhat profile"),
            (
                r#"{"dhatFileVersion": "x"}"#.to_owned(),
                "not a dhat profile",
            ),
            ("{\"dhatFileVersion\":2,".to_owned(), "not valid JSON"),
            (
                sample_json("rust-heap").replace("\"fs\":[1,4]", "\"fs\":[1,99]"),
                "ftbl has 5 entries",
            ),
            (
                sample_json("rust-heap").replace("\"dhatFileVersion\":2", "\"dhatFileVersion\":1"),
                "dhatFileVersion 1",
            ),
        ] {
            let err = decode(input.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode);
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
    }

    #[test]
    fn repeated_frames_cannot_expand_past_the_limit() {
        // One 64 KiB frame named 20,000 times: about 100 KB of JSON, over 1 GiB expanded.
        let fs = vec!["1"; 20_000].join(",");
        let json = format!(
            r#"{{"dhatFileVersion":2,"mode":"rust-heap","pps":[{{"tb":1,"tbk":1,"fs":[{fs}]}}],
            "ftbl":["[root]","{}"]}}"#,
            "x".repeat(64 * 1024)
        );
        let err = decode(json.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(
            err.to_string().contains("once its stacks are expanded"),
            "{err}"
        );
    }

    #[test]
    fn frame_parsing() {
        assert!(parse_frame("[root]").is_none());
        let f = parse_frame("main (main.c:7)").unwrap();
        assert_eq!(
            (f.function.as_str(), f.file.as_deref(), f.line),
            ("main", Some("main.c"), 7)
        );
        let f = parse_frame("0x4848899: malloc (in /usr/lib/vgpreload.so)").unwrap();
        assert_eq!(
            (f.function.as_str(), f.file, f.address),
            ("malloc", None, 0x4848899)
        );
        let f = parse_frame("0xzz: weird").unwrap();
        assert_eq!((f.function.as_str(), f.address), ("weird", 0));
        let f = parse_frame("C:\\src\\main.rs").unwrap();
        assert_eq!(f.function, "C:\\src\\main.rs");
    }
}
