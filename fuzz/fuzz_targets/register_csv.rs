#![no_main]
//! Fuzz target: register CSV files (a person uploads them; spreadsheets write anything):
//! reading never panics, and every row it reports is on a line the file has, in order.
use census_collector::model::register::RegisterSettings;
use census_collector::ops::register_csv::read_lines;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let settings = RegisterSettings::default();
    if let Ok((lines, bad)) = read_lines(data, &settings) {
        let last = data.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        assert!(lines.iter().all(|l| *l >= 2 && *l <= last), "{lines:?} of {last}");
        assert!(lines.windows(2).all(|w| w[0] < w[1]));
        assert!(bad <= lines.len() * 16);
    }
});
