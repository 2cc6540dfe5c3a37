//! `floe-chaos` in small (docs/chaos.md): 50 onboarding conversations and
//! 100 `test.pipeline` workflows for about 90 seconds while workers are
//! killed with SIGKILL, both API processes restarted, PostgreSQL restarted
//! and the model cut off; the run must find nothing lost or done twice,
//! and every kind of fault must really have happened.
//!
//! It runs the real binaries on an embedded cluster of its own (it has to
//! restart PostgreSQL), so it needs `floe-api` built beside `floe-chaos`
//! (`cargo build --workspace`, as `./scripts/test` does first).

use std::path::Path;
use std::process::Command;

/// The number after `name=` in the report's `faults:` line.
fn fault(report: &str, name: &str) -> u32 {
    report
        .lines()
        .find(|line| line.starts_with("faults:"))
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(&format!("{name}=")))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the report:\n{report}"))
}

#[test]
fn nothing_is_lost_or_done_twice_under_kills_restarts_and_an_llm_outage() {
    let chaos = Path::new(env!("CARGO_BIN_EXE_floe-chaos"));
    let api = chaos.with_file_name("floe-api");
    assert!(
        api.is_file(),
        "{} is missing: build it first (cargo build -p floe-api)",
        api.display()
    );
    let output = Command::new(chaos)
        .args([
            "--conversations",
            "50",
            "--workflows",
            "100",
            "--minutes",
            "1.5",
            "--kill-every-secs",
            "5",
            "--outage-secs",
            "5",
        ])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run floe-chaos");
    let report = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    println!("{report}");
    assert!(
        output.status.success(),
        "floe-chaos failed ({}):\n{report}\n{log}",
        output.status
    );
    assert!(report.contains("result: PASS"), "{report}");
    assert!(fault(&report, "kills") >= 1, "{report}");
    assert!(fault(&report, "api_restarts") >= 2, "{report}");
    assert_eq!(fault(&report, "postgres_restarts"), 1, "{report}");
    assert_eq!(fault(&report, "llm_outages"), 1, "{report}");
    // Each check printed, none failing.
    assert!(
        report.contains("jobs leased by a worker that is not alive"),
        "{report}"
    );
    assert!(!report.contains("[FAIL]"), "{report}");
}
