#![no_main]
//! Fuzz target: the people's filter language (parse, then evaluate what parses).
use census_collector::model::{Attributes, Ci, CiClass, CiStatus};
use census_collector::query::{eval, filter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(Some(expr)) = filter::parse(text) else { return };
    let now = chrono::Utc::now();
    let ci = Ci {
        id: "cmp_f".into(),
        class: CiClass::Computer,
        name: "fuzz".into(),
        attributes: Attributes::new(),
        volatile: Attributes::new(),
        status: CiStatus::Active,
        first_seen: now,
        last_seen: now,
        sources: vec![],
        version: 1,
        owner: None,
    };
    let _ = eval::matches(&expr, &eval::Subject { ci: &ci, software: &[], now });
});
