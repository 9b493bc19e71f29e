//! `lambda_init`: how long the Lambda function's init takes, from process start to its first
//! `GET /runtime/invocation/next`, with the Firehose sink (SDK configuration and the start-up
//! `DescribeDeliveryStream`) against a loopback fault endpoint, beside the memory sink as the
//! floor. Each run is a fresh process, as a cold start is.
//!
//! `cargo build --release -p stripe-webhook-lambda && cargo run --release -p stripe-webhook-benches --bin lambda_init -- [runs] [binary]`
//!
//! Prints a Markdown table: sink, runs, median, p90 and max milliseconds.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stripe_webhook_testkit::firehose_fault::FirehoseFault;
use stripe_webhook_testkit::lambda_runtime_api::LambdaRuntimeApi;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(20, |a| a.parse().expect("runs"));
    let binary: PathBuf = args.next().map_or_else(
        || stripe_webhook_testkit::workspace_root().join("target/release/stripe-webhook-lambda"),
        PathBuf::from,
    );
    stripe_webhook_benches::run_main("lambda_init", run(runs, binary), |table| {
        println!("{table}");
    })
}

async fn run(runs: usize, binary: PathBuf) -> Result<String, String> {
    if !binary.exists() {
        return Err(format!(
            "{} not found: cargo build --release -p stripe-webhook-lambda",
            binary.display()
        ));
    }
    let fault = FirehoseFault::start("lambda-init").await;
    let aws = fault.client_env();
    let firehose = stripe_webhook_testkit::env_pairs(
        &aws,
        &[("FIREHOSE_DELIVERY_STREAM_NAME", "lambda-init")],
    );
    let memory = [("SINK", "memory"), ("ALLOW_MEMORY_SINK", "true")];
    let mut table =
        String::from("| sink | runs | median ms | p90 ms | max ms |\n|---|---:|---:|---:|---:|\n");
    for (name, envs) in [
        ("memory", &memory[..]),
        ("firehose (loopback endpoint)", &firehose[..]),
    ] {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            times.push(init_once(&binary, envs).await?);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        table.push_str(&format!(
            "| {name} | {runs} | {:.1} | {:.1} | {:.1} |\n",
            ms(at(0.5)),
            ms(at(0.9)),
            ms(*times.last().expect("runs > 0"))
        ));
    }
    Ok(table)
}

/// One cold start: spawn, wait for the first poll, kill.
async fn init_once(binary: &PathBuf, envs: &[(&str, &str)]) -> Result<Duration, String> {
    let api = LambdaRuntimeApi::start().await;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(api.function_env())
        .env("STRIPE_WEBHOOK_SECRET", "whsec_lambda_init_bench")
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
    let polled = api.wait_first_poll(Duration::from_secs(30)).await;
    let _ = child.kill();
    let _ = child.wait();
    polled
        .map(|at| at - started)
        .ok_or_else(|| "the function never polled for an invocation".to_owned())
}
