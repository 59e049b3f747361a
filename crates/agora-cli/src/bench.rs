//! `agora bench`: the load tool of agora-bench, run on this data
//! directory against `--node` (else the node `agora up` serves). The
//! command parses and prints; the scenarios, their checks and the crypto
//! bound are agora-bench's.

use crate::datadir::Ctx;
use std::io::Write;

pub use agora_bench::BenchArgs;

/// `agora bench`: prints the report (one JSON object with `--json`), and
/// exits 2 after it when the run broke a rule it checks (a CPO bound twice,
/// money unaccounted for).
pub fn run(ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<()> {
    let report = agora_bench::run(ctx, ctx.node.as_deref(), a)?;
    crate::output::emit(ctx.json, &report.text(), report.json());
    let alarms = report.alarms();
    if !alarms.is_empty() {
        let _ = std::io::stdout().flush();
        eprintln!();
        for line in alarms {
            eprintln!("{line}");
        }
        // The report is printed (one JSON object with --json): exit
        // without a second, error object.
        std::process::exit(2);
    }
    Ok(())
}
