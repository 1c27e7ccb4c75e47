//! `--method auto` (the default) as a user meets it: it enumerates a 16-player layer, certifies
//! a top-k on a wide one or says plainly that it did not, and says what it chose and why.

mod common;

use common::{model_args, repo};
use std::path::Path;
use std::process::{Command, Output};

fn run(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run".to_string()];
    args.extend(model_args("digits-cnn"));
    args.extend(["--out".into(), out.to_string_lossy().into_owned()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_nshap"))
        .current_dir(repo())
        .args(&args)
        .output()
        .unwrap()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn sixteen_players_and_a_top_3_are_enumerated_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // 8 random examples per evaluation: relu1's suffix is nearly the whole network.
    let o = run(
        &out,
        &[
            "--players",
            "relu1",
            "--top-k",
            "3",
            "--examples-per-eval",
            "8",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("method auto: exact: 2^16 = 65536 evaluations"),
        "{stderr}"
    );
    let r = report(&out);
    assert_eq!(r["method"], "exact");
    assert_eq!(r["evaluations"], 65536);
    assert!(r["method_choice"]["reason"]
        .as_str()
        .unwrap()
        .contains("no error"));
    assert_eq!(r["top_k_resolved"], true);
    // run.json records the method chosen, so a resume rebuilds the same estimator.
    let record = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(record.contains("\"method\": \"exact\""), "{record}");
}

#[test]
fn a_512_player_layer_certifies_its_top_10_or_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(
        &out,
        &["--players", "flat", "--top-k", "10", "--budget", "30000"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stderr.contains("method auto: certified top-10: 512 players are too many to enumerate"),
        "{stderr}"
    );
    let r = report(&out);
    assert_eq!(r["method"], "certified");
    assert_eq!(r["delta"], 0.05);
    assert!(r["interval"]
        .as_str()
        .unwrap()
        .contains("confidence sequence"));
    match o.status.code() {
        Some(0) => assert_eq!(r["top_k_resolved"], true),
        Some(3) => {
            assert_eq!(r["top_k_resolved"], false);
            assert!(r["evaluations_needed"].as_u64().unwrap() > 0);
            assert!(
                stdout.contains("top-10 not certified") || stderr.contains("top-10 not certified"),
                "{stdout}\n{stderr}"
            );
        }
        other => panic!("exit {other:?}: {stderr}"),
    }
}

#[test]
fn without_a_top_k_question_auto_estimates_all_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(&out, &["--players", "relu2", "--budget", "3300"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("method auto: regression-adjusted sampling (all values"),
        "{stderr}"
    );
    assert_eq!(report(&out)["method"], "regression");
    // values sum to v(all) - v(none): the estimator is efficient by construction
    let r = report(&out);
    let residual = r["diagnostics"]["efficiency_residual"].as_f64();
    assert!(residual.is_some_and(|x| x < 1e-6), "{r}");
}

#[test]
fn auto_with_truncation_walks_permutations() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(
        &out,
        &[
            "--players",
            "relu2",
            "--budget",
            "3300",
            "--truncation",
            "0.2",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("truncation needs permutation walks"),
        "{stderr}"
    );
    assert_eq!(report(&out)["method"], "permutation");
}
