//! pprof `profile.proto` encoding and decoding (gzip'd or plain), using the prost messages of [`super::proto`].

use std::collections::HashMap;
use std::io::{Read, Write};

use super::proto::{self as protos, Message};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::model::{Frame, Mapping, Profile, Sample, ValueType};
use crate::error::{Error, Result};
use crate::names::AGE_SECS_LABEL;

/// Largest decompressed profile accepted, so a gzip bomb cannot exhaust memory.
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True if `bytes` starts like a gzip stream.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Gunzip `bytes` if they are gzip'd, else return them as they are.
pub fn maybe_gunzip(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    if !is_gzip(bytes) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::decode(format!("corrupt or truncated gzip stream: {e}")))?;
    if out.len() as u64 > MAX_DECODED_BYTES {
        return Err(Error::decode(format!(
            "profile is larger than {MAX_DECODED_BYTES} bytes once decompressed"
        )));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Encodes `profile` as a gzip'd pprof protobuf (what `/debug/pprof/heap` serves).
pub fn encode_gzip(profile: &Profile) -> Vec<u8> {
    let raw = encode(profile);
    let mut gz = GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        Compression::default(),
    );
    gz.write_all(&raw).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// Encodes `profile` as a plain pprof protobuf.
pub fn encode(profile: &Profile) -> Vec<u8> {
    to_proto(profile).encode_to_vec()
}

/// Decodes a pprof protobuf, gzip'd or plain.
pub fn decode(bytes: &[u8]) -> Result<Profile> {
    let raw = maybe_gunzip(bytes)?;
    let proto = protos::Profile::decode(raw.as_ref())
        .map_err(|e| Error::decode(format!("not a pprof profile: {e}")))?;
    from_proto(&proto)
}

struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Self {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// Converts the model to pprof's protobuf message. Frames sharing an address are emitted as one
/// location with several lines (inlined calls), innermost first, as pprof expects.
pub fn to_proto(profile: &Profile) -> protos::Profile {
    let mut strings = Strings::new();
    // By name, then file: looked up by reference, so a known function costs no copies.
    let mut functions: HashMap<String, Vec<(Option<String>, u64)>> = HashMap::new();
    let mut function_list = Vec::new();
    let mut locations: HashMap<Vec<(u64, i64)>, u64> = HashMap::new();
    let mut location_list: Vec<protos::Location> = Vec::new();
    let mut samples = Vec::with_capacity(profile.samples.len());

    let mut function_id = |f: &Frame, strings: &mut Strings| -> u64 {
        let known = functions.get(f.function.as_str());
        if let Some(&(_, id)) = known.and_then(|v| v.iter().find(|(file, _)| *file == f.file)) {
            return id;
        }
        let id = function_list.len() as u64 + 1;
        function_list.push(protos::Function {
            id,
            name: strings.get(&f.function),
            system_name: strings.get(&f.function),
            filename: strings.get(f.file.as_deref().unwrap_or("")),
            start_line: 0,
        });
        functions
            .entry(f.function.clone())
            .or_default()
            .push((f.file.clone(), id));
        id
    };

    // Mappings: ids from 1 in the model's order (main binary first), looked up by address.
    let mapping_of = |addr: u64| -> u64 {
        if addr == 0 {
            return 0;
        }
        profile
            .mappings
            .iter()
            .position(|m| m.contains(addr))
            .map_or(0, |i| i as u64 + 1)
    };
    // What each mapping's locations are: symbolized (with files and lines, with inlined
    // frames) or not. A mapping claims to be symbolized only when all of its locations are,
    // so tools that can name addresses (`go tool pprof BINARY`) do so for the others.
    #[derive(Clone, Copy)]
    struct Resolution {
        any: bool,
        raw: bool,
        files: bool,
        inlined: bool,
    }
    let mut resolution = vec![
        Resolution {
            any: false,
            raw: false,
            files: true,
            inlined: false,
        };
        profile.mappings.len()
    ];
    for sample in &profile.samples {
        let mut i = 0;
        while i < sample.stack.len() {
            let addr = sample.stack[i].address;
            let mut j = i + 1;
            if addr != 0 {
                while j < sample.stack.len() && sample.stack[j].address == addr {
                    j += 1;
                }
            }
            if let Some(r) = (mapping_of(addr) as usize)
                .checked_sub(1)
                .map(|m| &mut resolution[m])
            {
                let frames = &sample.stack[i..j];
                r.any = true;
                r.raw |= frames.iter().any(Frame::is_raw);
                r.files &= frames.iter().all(|f| f.file.is_some());
                r.inlined |= frames.len() > 1;
            }
            i = j;
        }
    }
    let mapping_list: Vec<protos::Mapping> = profile
        .mappings
        .iter()
        .zip(&resolution)
        .enumerate()
        .map(|(i, (m, r))| {
            let named = r.any && !r.raw;
            protos::Mapping {
                id: i as u64 + 1,
                memory_start: m.start,
                memory_limit: m.limit,
                file_offset: m.offset,
                filename: strings.get(&m.file),
                build_id: strings.get(&m.build_id),
                has_functions: named,
                has_filenames: named && r.files,
                has_line_numbers: named && r.files,
                has_inline_frames: named && (r.inlined || r.files),
            }
        })
        .collect();

    // A stack's samples (its `alloc_*` one and one per age bucket) come one after another:
    // the locations of the first serve the rest, compared, not looked up again.
    let mut previous: Option<(&[Frame], Vec<u64>)> = None;
    for sample in &profile.samples {
        let stack = sample.stack.as_slice();
        let shared = previous
            .as_ref()
            .filter(|(p, _)| *p == stack)
            .map(|(_, ids)| ids.clone());
        let location_ids = shared.unwrap_or_else(|| {
            let mut location_ids = Vec::new();
            let mut i = 0;
            while i < sample.stack.len() {
                // Group runs of frames with the same non-zero address: one location, inline lines.
                let mut j = i + 1;
                let addr = sample.stack[i].address;
                if addr != 0 {
                    while j < sample.stack.len() && sample.stack[j].address == addr {
                        j += 1;
                    }
                }
                // An unsymbolized frame is a location without lines, as pprof writes one.
                let lines: Vec<(u64, i64)> = sample.stack[i..j]
                    .iter()
                    .filter(|f| !f.is_raw())
                    .map(|f| (function_id(f, &mut strings), i64::from(f.line)))
                    .collect();
                let mut key = lines.clone();
                key.push((u64::MAX, addr as i64));
                let next_id = location_list.len() as u64 + 1;
                let id = *locations.entry(key).or_insert_with(|| {
                    location_list.push(protos::Location {
                        id: next_id,
                        mapping_id: mapping_of(addr),
                        address: addr,
                        line: lines
                            .iter()
                            .map(|&(function_id, line)| protos::Line { function_id, line })
                            .collect(),
                        is_folded: false,
                    });
                    next_id
                });
                location_ids.push(id);
                i = j;
            }
            location_ids
        });
        previous = Some((stack, location_ids.clone()));
        let label = sample
            .labels
            .iter()
            .map(|(k, v)| match v.parse::<i64>() {
                // Numeric labels (each live block's age) are written as pprof's numeric
                // labels with their unit; decoding turns them back into strings.
                Ok(num) if k == AGE_SECS_LABEL => protos::Label {
                    key: strings.get(k),
                    str: 0,
                    num,
                    num_unit: strings.get("seconds"),
                },
                _ => protos::Label {
                    key: strings.get(k),
                    str: strings.get(v),
                    num: 0,
                    num_unit: 0,
                },
            })
            .collect();
        samples.push(protos::Sample {
            location_id: location_ids,
            value: sample.values.clone(),
            label,
        });
    }

    let sample_type = profile
        .sample_types
        .iter()
        .map(|t| protos::ValueType {
            ty: strings.get(&t.ty),
            unit: strings.get(&t.unit),
        })
        .collect();
    let period_type = profile.period_type.as_ref().map(|t| protos::ValueType {
        ty: strings.get(&t.ty),
        unit: strings.get(&t.unit),
    });
    let comment = profile.comments.iter().map(|c| strings.get(c)).collect();
    let default_sample_type = profile
        .default_sample_type
        .as_deref()
        .map(|t| strings.get(t))
        .unwrap_or(0);

    protos::Profile {
        sample_type,
        sample: samples,
        mapping: mapping_list,
        location: location_list,
        function: function_list,
        string_table: strings.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: profile.time_nanos,
        duration_nanos: profile.duration_nanos,
        period_type,
        period: profile.period,
        comment,
        default_sample_type,
    }
}

/// Converts a decoded pprof message to the model, checking every index it follows.
pub fn from_proto(p: &protos::Profile) -> Result<Profile> {
    let string = |i: i64| -> Result<&str> {
        usize::try_from(i)
            .ok()
            .and_then(|i| p.string_table.get(i))
            .map(String::as_str)
            .ok_or_else(|| Error::decode(format!("string index {i} out of range")))
    };
    if p.string_table.first().is_some_and(|s| !s.is_empty()) {
        return Err(Error::decode(
            "not a pprof profile: string table must start with \"\"",
        ));
    }
    if p.sample_type.is_empty() {
        return Err(Error::decode("not a pprof profile: it has no sample types"));
    }
    let value_type = |v: &protos::ValueType| -> Result<ValueType> {
        Ok(ValueType::new(string(v.ty)?, string(v.unit)?))
    };
    let sample_types = p
        .sample_type
        .iter()
        .map(value_type)
        .collect::<Result<Vec<_>>>()?;

    let functions: HashMap<u64, &protos::Function> = p.function.iter().map(|f| (f.id, f)).collect();
    let mut locations: HashMap<u64, (Vec<Frame>, u64)> = HashMap::with_capacity(p.location.len());
    for loc in &p.location {
        let mut frames = Vec::with_capacity(loc.line.len().max(1));
        for line in &loc.line {
            let f = functions.get(&line.function_id).ok_or_else(|| {
                Error::decode(format!(
                    "location {} names missing function {}",
                    loc.id, line.function_id
                ))
            })?;
            let name = string(f.name)?;
            let name = if name.is_empty() {
                string(f.system_name)?
            } else {
                name
            };
            let file = string(f.filename)?;
            frames.push(Frame {
                function: name.to_owned(),
                file: (!file.is_empty()).then(|| file.to_owned()),
                line: u32::try_from(line.line).unwrap_or(0),
                address: loc.address,
            });
        }
        if frames.is_empty() {
            // An unsymbolized location: name it by address, as pprof does.
            frames.push(Frame {
                function: format!("{:#x}", loc.address),
                file: None,
                line: 0,
                address: loc.address,
            });
        }
        let cost = frames
            .iter()
            .map(frame_cost)
            .fold(0u64, u64::saturating_add);
        locations.insert(loc.id, (frames, cost));
    }

    // Samples repeat locations, so a small file can describe a huge model: bound its size
    // before building any of it.
    let model_bytes = p
        .sample
        .iter()
        .flat_map(|s| &s.location_id)
        .filter_map(|id| locations.get(id).map(|(_, cost)| *cost))
        .fold(0u64, u64::saturating_add);
    if model_bytes > MAX_DECODED_BYTES {
        return Err(Error::decode(format!(
            "profile is larger than {MAX_DECODED_BYTES} bytes once its stacks are expanded"
        )));
    }
    let mut samples = Vec::with_capacity(p.sample.len());
    for s in &p.sample {
        if s.value.len() != sample_types.len() {
            return Err(Error::decode(format!(
                "a sample has {} values for {} sample types",
                s.value.len(),
                sample_types.len()
            )));
        }
        let mut stack = Vec::new();
        for id in &s.location_id {
            let (frames, _) = locations
                .get(id)
                .ok_or_else(|| Error::decode(format!("sample names missing location {id}")))?;
            stack.extend(frames.iter().cloned());
        }
        let mut labels = Vec::new();
        for l in &s.label {
            if l.str != 0 {
                labels.push((string(l.key)?.to_owned(), string(l.str)?.to_owned()));
            } else {
                labels.push((string(l.key)?.to_owned(), l.num.to_string()));
            }
        }
        samples.push(Sample {
            stack,
            values: s.value.clone(),
            labels,
        });
    }

    let mappings = p
        .mapping
        .iter()
        .map(|m| {
            Ok(Mapping {
                start: m.memory_start,
                limit: m.memory_limit,
                offset: m.file_offset,
                file: string(m.filename)?.to_owned(),
                build_id: string(m.build_id)?.to_owned(),
            })
        })
        .collect::<Result<Vec<_>>>()?;

    Ok(Profile {
        mappings,
        sample_types,
        samples,
        period_type: p.period_type.as_ref().map(value_type).transpose()?,
        period: p.period,
        time_nanos: p.time_nanos,
        duration_nanos: p.duration_nanos,
        default_sample_type: match p.default_sample_type {
            0 => None,
            i => Some(string(i)?.to_owned()),
        },
        comments: p
            .comment
            .iter()
            .map(|&c| string(c).map(str::to_owned))
            .collect::<Result<_>>()?,
    })
}

/// Roughly the memory one decoded frame takes.
pub(crate) fn frame_cost(f: &Frame) -> u64 {
    let strings = f.function.len() + f.file.as_deref().map_or(0, str::len);
    (std::mem::size_of::<Frame>() + strings) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn samples_of_one_stack_share_its_locations() {
        let frame = |name: &str, line| Frame {
            line,
            address: 0x1000 + line as u64,
            ..Frame::named(name)
        };
        let a = vec![frame("myapp::leaf", 1), frame("myapp::main", 2)];
        // The same names, one line apart at the caller: another stack.
        let b = vec![frame("myapp::leaf", 1), frame("myapp::main", 3)];
        let mut p = crate::profile::testutil::heap_profile(&[]);
        for (stack, bytes) in [(&a, 1), (&a, 2), (&b, 4), (&a, 8)] {
            p.samples.push(Sample {
                stack: stack.clone(),
                values: vec![0, 0, 1, bytes],
                labels: vec![("age".into(), bytes.to_string())],
            });
        }
        let proto = to_proto(&p);
        let ids: Vec<&[u64]> = proto.sample.iter().map(|s| &s.location_id[..]).collect();
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[0], ids[3]);
        assert_eq!(ids[2][0], ids[0][0]);
        assert_ne!(ids[2][1], ids[0][1]);
        assert_eq!(proto.location.len(), 3);
        assert_eq!(from_proto(&proto).unwrap(), p);
    }

    #[test]
    fn repeated_locations_cannot_expand_past_the_limit() {
        // A location of 1,000 inlined 1 KiB names, named 1,100 times by each of 2 samples:
        // about 6 KB encoded, more than 2 GiB once expanded. Decoding must refuse it, not
        // allocate it.
        let name = "x".repeat(1024);
        let p = protos::Profile {
            sample_type: vec![protos::ValueType { ty: 1, unit: 2 }],
            string_table: vec!["".into(), "inuse_space".into(), "bytes".into(), name],
            function: vec![protos::Function {
                id: 1,
                name: 3,
                ..Default::default()
            }],
            location: vec![protos::Location {
                id: 1,
                line: vec![
                    protos::Line {
                        function_id: 1,
                        line: 0,
                    };
                    1000
                ],
                ..Default::default()
            }],
            sample: vec![
                protos::Sample {
                    location_id: vec![1; 1100],
                    value: vec![1],
                    label: Vec::new(),
                };
                2
            ],
            ..Default::default()
        };
        let bytes = p.encode_to_vec();
        assert!(bytes.len() < 16 * 1024, "{}", bytes.len());
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(
            err.to_string().contains("once its stacks are expanded"),
            "{err}"
        );
        // The same shape at a sane size still decodes.
        let mut small = p.clone();
        small.sample[0].location_id.truncate(3);
        small.sample.truncate(1);
        let ok = decode(&small.encode_to_vec()).unwrap();
        assert_eq!(ok.samples[0].stack.len(), 3000);
    }
}
