//! What the agent's connection sampling costs on a busy host: N established TCP
//! connections (default 10,000) held open between this process and a child it starts (each
//! side under the 20,000-descriptor limit), then the agent's own `Sampler::sample` (read
//! /proc/net/tcp{,6} and udp{,6}, find each socket's process, fold into flows) timed over
//! R samples, as CPU time of this process, and expressed as a share of one core at the
//! default 60-second interval. A second table folds N synthetic connections to N distinct
//! peers (what loopback cannot show: every peer its own flow) through the pure parser and
//! the bounded aggregate.
//!
//! usage: sampling-bench [--connections N] [--samples R]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use census_agent::probe::connections::{parse_table, Aggregate, Sampler, MAX_FLOWS};

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn serve(n: usize) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(listener.accept()?.0);
    }
    // Until the parent closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(held);
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut n, mut samples) = (10_000usize, 20usize);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--connections" => n = value()?.parse()?,
            "--samples" => samples = value()?.parse()?,
            "--serve" => return serve(value()?.parse()?),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--serve", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut port = String::new();
    out.read_line(&mut port)?;
    let port: u16 = port.trim().parse()?;
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(TcpStream::connect(("127.0.0.1", port))?);
    }
    std::thread::sleep(Duration::from_millis(500));
    let established = std::fs::read_to_string("/proc/net/tcp")?
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("01"))
        .count();

    let sampler = Sampler::default();
    let mut cpu = Vec::with_capacity(samples);
    let mut wall = Vec::with_capacity(samples);
    for _ in 0..samples {
        let (c0, w0) = (cpu_seconds(), Instant::now());
        sampler.sample()?;
        cpu.push((cpu_seconds() - c0) * 1e3);
        wall.push(w0.elapsed().as_secs_f64() * 1e3);
    }
    let p = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[(v.len() * 99 / 100).min(v.len() - 1)])
    };
    let (cpu50, cpu99) = p(cpu.clone());
    let (wall50, _) = p(wall);
    println!("| what | value |");
    println!("|---|---:|");
    println!(
        "| established connections (socket table entries, both ends on loopback) | {established} |"
    );
    println!("| one sample, CPU ms p50 / p99 | {cpu50:.1} / {cpu99:.1} |");
    println!("| one sample, wall ms p50 | {wall50:.1} |");
    println!(
        "| share of one core at the default 60 s interval (p99) | {:.3} % |",
        cpu99 / 60_000.0 * 100.0
    );
    drop(clients);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n");
    }
    let _ = child.wait();

    // N connections to N distinct peers, through the parser and the bounded aggregate.
    let mut table = String::from("  sl  local_address rem_address   st\n");
    for i in 0..n as u32 {
        let peer = u32::from_le_bytes([10, 9, (i >> 8) as u8, i as u8]);
        table.push_str(&format!(
            "{i}: 0201000A:{:04X} {peer:08X}:01BB 01 00000000:00000000 00:00000000 00000000 0 0 {} 1\n",
            40_000 + (i % 20_000),
            100_000 + i
        ));
    }
    let t0 = Instant::now();
    let rounds = 20;
    let mut agg = Aggregate::default();
    for r in 0..rounds {
        let (est, listening) = parse_table(&table, "tcp", false);
        let listening = listening.into_iter().map(|p| ("tcp", p)).collect();
        agg.add_sample(&est, &listening, &Default::default(), r);
    }
    let per = t0.elapsed().as_secs_f64() * 1e3 / rounds as f64;
    println!("| {n} connections to {n} distinct peers: parse + fold, ms per sample | {per:.1} |");
    println!(
        "| flows held after {rounds} samples (bound {MAX_FLOWS}), observations refused | {} , {} |",
        agg.flows.len(),
        agg.dropped
    );
    Ok(())
}
