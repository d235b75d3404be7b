use super::rule::{AgeVerdict, judge, ks_uniform};
use super::*;
use crate::profile::model::{Frame, Sample};
use crate::profile::testutil::{Rng, heap_types};

fn unit(rng: &mut Rng) -> f64 {
    (rng.next() >> 11) as f64 / (1u64 << 53) as f64
}

/// The ages, as the profile gives them (whole seconds), of the sampled live blocks of
/// something allocated at `per_sec` sampled blocks a second over the last `span` seconds and
/// still live: a Poisson process in age.
fn poisson_ages(rng: &mut Rng, per_sec: f64, span: f64) -> Vec<f64> {
    let mut ages = Vec::new();
    let mut t = 0.0;
    loop {
        t += -(1.0 - unit(rng)).ln() / per_sec;
        if t >= span {
            break;
        }
        ages.push(t.round());
    }
    ages.sort_by(f64::total_cmp);
    ages
}

const INTERVAL: f64 = 60.0;

/// Verdicts of `runs` simulated sites, one seed each.
fn tally(
    runs: u64,
    mut site: impl FnMut(&mut Rng) -> (Vec<f64>, f64),
) -> BTreeMap<AgeVerdict, u32> {
    let mut out = BTreeMap::new();
    for seed in 0..runs {
        let mut rng = Rng::new(seed + 1);
        let (ages, uptime) = site(&mut rng);
        *out.entry(judge(&ages, uptime).verdict).or_insert(0) += 1;
    }
    out
}

fn count(t: &BTreeMap<AgeVerdict, u32>, v: AgeVerdict) -> u32 {
    t.get(&v).copied().unwrap_or(0)
}

/// The rule under Poisson sampling noise, 100 seeds each (the acceptance asks 20; BENCHMARKS.md
/// publishes these rates, printed with `--nocapture`):
/// - a leak of 5 sampled blocks an interval (60 s), begun at a random time 10 to 20 intervals
///   into a 30-interval uptime: `leak-like` in 100 of 100 (at the 5 % level, 1.36, 95: the
///   rest `mixed`);
/// - the same leak at 1 sampled block an interval: `leak-like` 84, `too few samples` 16;
/// - time-evicted caches (windows 10 s to 5 min, 1 to 20 sampled blocks a second, uptimes 5 to
///   50 windows): `bounded` in 100, never `leak-like`;
/// - churn (lifetimes exponential, mean 0.5 s): `young` in 100;
/// - startup state (allocated in the first 5 s of a 30-minute uptime): `old-steady` in 100.
#[test]
fn verdicts_under_sampling_noise() {
    let leak = |per_interval: f64| {
        move |rng: &mut Rng| {
            let uptime = 30.0 * INTERVAL;
            let onset = INTERVAL * (10.0 + 10.0 * unit(rng));
            (
                poisson_ages(rng, per_interval / INTERVAL, uptime - onset),
                uptime,
            )
        }
    };
    let leaks = tally(100, leak(5.0));
    assert!(count(&leaks, AgeVerdict::LeakLike) >= 80, "{leaks:?}");
    let first20 = tally(20, leak(5.0));
    assert!(count(&first20, AgeVerdict::LeakLike) >= 16, "{first20:?}");
    let sparse = tally(100, leak(1.0));
    assert!(count(&sparse, AgeVerdict::LeakLike) >= 60, "{sparse:?}");

    let caches = tally(100, |rng| {
        let window = 10.0 + 290.0 * unit(rng);
        let per_sec = 1.0 + 19.0 * unit(rng);
        let uptime = window * (5.0 + 45.0 * unit(rng));
        (poisson_ages(rng, per_sec, window), uptime)
    });
    assert_eq!(count(&caches, AgeVerdict::LeakLike), 0, "{caches:?}");
    assert!(count(&caches, AgeVerdict::Bounded) >= 95, "{caches:?}");

    let churn = tally(100, |rng| {
        // Live ages of steady allocations with exponential lifetimes are exponential too.
        let mut ages: Vec<f64> = (0..40)
            .map(|_| (-(1.0 - unit(rng)).ln() * 0.5).round())
            .collect();
        ages.sort_by(f64::total_cmp);
        (ages, 600.0)
    });
    assert_eq!(count(&churn, AgeVerdict::Young), 100, "{churn:?}");

    let startup = tally(100, |rng| {
        let uptime = 1800.0;
        let mut ages: Vec<f64> = (0..30)
            .map(|_| (uptime - 5.0 * unit(rng)).round())
            .collect();
        ages.sort_by(f64::total_cmp);
        (ages, uptime)
    });
    assert_eq!(count(&startup, AgeVerdict::OldSteady), 100, "{startup:?}");
    // The rates BENCHMARKS.md publishes (`--nocapture`).
    eprintln!(
        "leak 5/interval {leaks:?}; first 20 seeds {first20:?}; leak 1/interval {sparse:?}; \
         caches {caches:?}; churn {churn:?}; startup {startup:?}"
    );
}

#[test]
fn the_rule_in_its_corners() {
    let few: Vec<f64> = (0..9).map(f64::from).collect();
    assert_eq!(judge(&few, 100.0).verdict, AgeVerdict::TooFewSamples);
    let even: Vec<f64> = (0..60).map(f64::from).collect();
    let j = judge(&even, 90.0);
    assert_eq!(j.verdict, AgeVerdict::LeakLike);
    assert!((j.span_secs - 59.0 * 61.0 / 60.0).abs() < 1e-9, "{j:?}");
    assert_eq!(judge(&even, 1000.0).verdict, AgeVerdict::Bounded);
    // Bursty: half at 1-5 s, half at 50-60 s: not uniform.
    let mut bursts: Vec<f64> = (0..30).map(|i| f64::from(1 + i % 5)).collect();
    bursts.extend((0..30).map(|i| f64::from(50 + i % 10)));
    bursts.sort_by(f64::total_cmp);
    assert_eq!(judge(&bursts, 90.0).verdict, AgeVerdict::Mixed);
    assert!(ks_uniform(&even, 60.0) < 0.05);
    assert!(ks_uniform(&bursts, 60.0) > 0.3);
}

fn sample(function: &str, bucket: &str, ages: &[u64], bytes: i64) -> Sample {
    let mut labels = vec![(AGE_LABEL.to_owned(), bucket.to_owned())];
    labels.extend(
        ages.iter()
            .map(|a| (AGE_SECS_LABEL.to_owned(), a.to_string())),
    );
    Sample {
        stack: vec![Frame::named(function), Frame::named("myapp::main")],
        values: vec![0, 0, ages.len() as i64, bytes],
        labels,
    }
}

#[test]
fn sites_from_a_profile() {
    let leak: Vec<u64> = (0..60).collect();
    let cache: Vec<u64> = (0..40).map(|i| i / 4).collect();
    let profile = Profile {
        sample_types: heap_types(),
        samples: vec![
            // The leak's blocks in two age buckets, as the service splits them.
            sample("myapp::leak", "1-10s", &leak[..10], 10 << 20),
            sample("myapp::leak", "10s-1m", &leak[10..], 50 << 20),
            sample("myapp::cache::fill", "1-10s", &cache, 20 << 20),
            sample("myapp::tiny", "<1s", &[0, 0], 1 << 20),
        ],
        time_nanos: 2_000_000_000_000_000_000,
        comments: vec![format!("{UPTIME_COMMENT}=90.5")],
        ..Profile::default()
    };
    let a = ages(&profile, &AgesOptions::default()).unwrap();
    assert_eq!(a.uptime_secs, 90.5);
    let names: Vec<&str> = a.sites.iter().map(|s| s.site.as_str()).collect();
    assert_eq!(names, ["myapp::leak", "myapp::cache::fill", "myapp::tiny"]);
    let l = &a.sites[0];
    assert_eq!(
        (l.verdict, l.samples, l.live_bytes),
        (AgeVerdict::LeakLike, 60, 60 << 20)
    );
    let span = 59.0 * 61.0 / 60.0;
    assert!((l.onset_unix_secs.unwrap() - (2e9 - span)).abs() < 1e-3);
    assert!((l.rate_bytes_per_sec.unwrap() - (60 << 20) as f64 / span).abs() < 1.0);
    assert_eq!(l.bucket_bytes[1] + l.bucket_bytes[2], 60 << 20);
    let c = &a.sites[1];
    assert_eq!(c.verdict, AgeVerdict::Bounded);
    assert!((c.window_secs.unwrap() - 9.0 * 41.0 / 40.0).abs() < 1e-9);
    assert_eq!((c.onset_unix_secs, c.rate_bytes_per_sec), (None, None));
    assert_eq!(a.sites[2].verdict, AgeVerdict::TooFewSamples);
    let json = serde_json::to_value(l).unwrap();
    for key in [
        "site",
        "short",
        "live_bytes",
        "median_age_secs",
        "oldest_age_secs",
        "share_older_than_600s",
        "verdict",
        "onset_unix_secs",
        "rate_bytes_per_sec",
        "samples",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert_eq!(json["verdict"], "leak-like");
    // Nothing older than ten minutes: a plain 0, not the -0 an empty float sum gives.
    assert!(l.share_older_than_600s.is_sign_positive() && l.share_older_than_600s == 0.0);
    assert!(serde_json::to_value(c).unwrap()["onset_unix_secs"].is_null());

    let mut none = profile.clone();
    for s in &mut none.samples {
        s.labels.retain(|(k, _)| k != AGE_SECS_LABEL);
    }
    let err = ages(&none, &AgesOptions::default()).unwrap_err();
    assert!(err.to_string().contains(AGE_SECS_LABEL), "{err}");
}

#[test]
fn buckets_are_log_spaced_and_cover_every_age() {
    assert_eq!(AGE_BUCKETS[age_bucket(0)].0, "<1s");
    assert_eq!(AGE_BUCKETS[age_bucket(999)].0, "<1s");
    assert_eq!(AGE_BUCKETS[age_bucket(1000)].0, "1-10s");
    assert_eq!(AGE_BUCKETS[age_bucket(30 * 60_000)].0, "10m-1h");
    assert_eq!(AGE_BUCKETS[age_bucket(u64::MAX)].0, ">1d");
    assert!(AGE_BUCKETS.windows(2).all(|w| w[0].1 < w[1].1));
}

/// The ages of a leak whose rate follows its traffic: sampled blocks a second
/// `per_sec * (1 + a sin(2 pi t / day))` over `span` seconds, by thinning a Poisson process.
fn traffic_ages(rng: &mut Rng, per_sec: f64, a: f64, day: f64, span: f64) -> Vec<f64> {
    let mut ages: Vec<f64> = poisson_ages(rng, per_sec * (1.0 + a), span)
        .into_iter()
        .filter(|&t| {
            let rate = 1.0 + a * (std::f64::consts::TAU * t / day).sin();
            unit(rng) * (1.0 + a) < rate
        })
        .collect();
    ages.sort_by(f64::total_cmp);
    ages
}

/// A real leak grows with its traffic. Found on a public file server: a leak of 357 sampled
/// blocks whose load paused for 70 of its 366 s was `mixed` while the KS bound alone
/// (1.63/sqrt(n), 0.086 there) decided. With many samples that bound shrinks below any real
/// traffic's swing; [`LEAK_SHAPE_TOLERANCE`] keeps such leaks `leak-like`, and a site whose
/// growth sits beside a short-lived use, or came in bursts, stays `mixed`.
#[test]
fn a_leak_that_follows_its_traffic_is_leak_like() {
    let day = 86_400.0;
    // Two days of a leak at 4:1 day/night swing, ~2,000 sampled blocks, in a 3-day uptime.
    let daily = tally(20, |rng| {
        (traffic_ages(rng, 0.0116, 0.6, day, 2.0 * day), 3.0 * day)
    });
    assert_eq!(count(&daily, AgeVerdict::LeakLike), 20, "{daily:?}");
    // Paused for the last fifth of its span minus a little (no load lately), 350 blocks.
    let paused = tally(20, |rng| {
        let ages: Vec<f64> = poisson_ages(rng, 350.0 / 300.0, 300.0)
            .into_iter()
            .map(|a| a + 55.0)
            .collect();
        (ages, 400.0)
    });
    assert_eq!(count(&paused, AgeVerdict::LeakLike), 20, "{paused:?}");
    // The same leak beside a short-lived use holding 40 % of the site's live samples.
    let shared = tally(20, |rng| {
        let mut ages = poisson_ages(rng, 1.0, 300.0);
        let young = ages.len() * 2 / 3;
        ages.extend((0..young).map(|_| (unit(rng) * 2.0).round()));
        ages.sort_by(f64::total_cmp);
        (ages, 400.0)
    });
    assert_eq!(count(&shared, AgeVerdict::Mixed), 20, "{shared:?}");
    // Before the floor, the KS bound alone called most of the daily leaks `mixed`.
    let strict = (1..=20)
        .filter(|&seed| {
            let mut rng = Rng::new(seed);
            let ages = traffic_ages(&mut rng, 0.0116, 0.6, day, 2.0 * day);
            let span =
                ages.last().copied().unwrap_or(0.0) * (ages.len() as f64 + 1.0) / ages.len() as f64;
            ks_uniform(&ages, span) > KS_CRITICAL / (ages.len() as f64).sqrt()
        })
        .count();
    assert!(
        strict >= 10,
        "only {strict} of 20 daily leaks fail the KS bound alone"
    );
}
