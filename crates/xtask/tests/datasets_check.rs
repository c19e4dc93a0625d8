//! `cargo xtask datasets check` over the shipped `datasets/` and over copies of a shipped spec
//! changed in each way it must refuse, accept, or ask to be recorded.

use std::path::{Path, PathBuf};
use std::process::Command;

const RECORDS: &str = include_str!("../../../datasets/records.toml");

/// Runs the check over `dir` (the shipped `datasets/` when `None`) with `args`: whether it
/// passed, and what it printed.
fn check(dir: Option<&Path>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(["datasets", "check"]).args(args);
    if let Some(dir) = dir {
        command.arg("--dir").arg(dir);
    }
    let output = command.output().expect("xtask runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{:?}: {printed}",
        output.status
    );
    (output.status.success(), printed)
}

/// A directory holding `records.toml` as `spec`, with `RECORDS` recorded as version 1.
fn datasets(case: &str, spec: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-check-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("history")).unwrap();
    std::fs::write(dir.join("records.toml"), spec).unwrap();
    std::fs::write(dir.join("history/records.v1.toml"), RECORDS).unwrap();
    dir
}

/// `RECORDS` with a column appended.
fn appended(column: &str) -> String {
    let at = RECORDS.find("[[endpoints]]").unwrap();
    format!(
        "{}[[columns]]\n{column}\n\n{}",
        &RECORDS[..at],
        &RECORDS[at..]
    )
}

/// `RECORDS` with `from` replaced by `to` (which must be there).
fn edited(from: &str, to: &str) -> String {
    assert!(RECORDS.contains(from), "{from}");
    RECORDS.replace(from, to)
}

#[test]
fn the_shipped_datasets_are_as_recorded() {
    let (passed, printed) = check(None, &[]);
    assert!(passed, "{printed}");
    for name in ["amazon_reviews", "events", "records", "game_rounds"] {
        assert!(
            printed.contains(&format!("{name}: ok, as recorded in ")),
            "{printed}"
        );
    }
}

#[test]
fn each_incompatible_change_is_refused_with_its_file_field_and_fix() {
    let country = "[[columns]]\nname = \"country\"\ntype = \"string\"\ncheck = \"alpha3\"\n\
                   doc = \"ISO 3166 alpha-3 code, stored in upper case (USA).\"\n\n";
    let category = "[[columns]]\nname = \"category\"\ntype = \"string\"\n\n";
    let cases = [
        (
            "removed",
            edited(category, ""),
            "`columns[3]`: `category` is gone (removed or renamed)",
        ),
        (
            "renamed",
            edited("name = \"category\"", "name = \"kind\""),
            "`columns[3]`: `category` is gone (removed or renamed)",
        ),
        (
            "retyped",
            edited("scale = 2", "scale = 4"),
            "`columns[4]`: `amount` was decimal (scale 2), now decimal (scale 4)",
        ),
        (
            "moved",
            edited(
                &format!("{country}{category}"),
                &format!("{category}{country}"),
            ),
            "`columns[2]`: `country` moved to columns[3]",
        ),
        (
            "identity",
            edited("identity = [\"id\"]", "identity = [\"id\", \"country\"]"),
            "`identity`: `id` before, `id, country` now",
        ),
        (
            "kafka_key",
            edited("kafka_key = \"id\"", "kafka_key = \"country\""),
            "`kafka_key`: `id` before, `country` now",
        ),
        (
            "time",
            appended("name = \"seen_at\"\ntype = \"timestamp\"\nformat = \"epoch_s\"\ndefault = 0")
                .replace("time = \"created_at\"", "time = \"seen_at\""),
            "`time`: `created_at` before, `seen_at` now",
        ),
        (
            "required",
            appended("name = \"rank\"\ntype = \"uint64\""),
            "`columns[6]`: `rank` is new and neither nullable nor with a default",
        ),
    ];
    for (case, spec, problem) in cases {
        let dir = datasets(case, &spec);
        let (passed, printed) = check(Some(&dir), &[]);
        assert!(!passed, "{case}: {printed}");
        let expected = format!(
            "records: refused: {}: {problem}",
            dir.join("records.toml").display()
        );
        assert!(printed.contains(&expected), "{case}: {printed}");
        assert!(
            printed.contains(&format!(
                "(recorded in {})",
                dir.join("history/records.v1.toml").display()
            )),
            "{case}: {printed}"
        );
        assert!(
            printed.contains("; declare a new dataset `records_v2` (datasets/records_v2.toml) with the change and copy the rows over"),
            "{case}: {printed}"
        );
        // `--record` records nothing refused.
        let (passed, _) = check(Some(&dir), &["--record"]);
        assert!(!passed, "{case}");
        assert!(!dir.join("history/records.v2.toml").exists(), "{case}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_compatible_change_passes_once_recorded() {
    let spec = appended("name = \"note\"\ntype = \"string\"\nnullable = true");
    let dir = datasets("compatible", &spec);
    let (passed, printed) = check(Some(&dir), &[]);
    assert!(!passed, "{printed}");
    let v2 = dir.join("history/records.v2.toml");
    assert!(
        printed.contains(&format!(
            "records: compatible with {} (appends `note`), not recorded; record it with `cargo xtask datasets check --record` (writes {})",
            dir.join("history/records.v1.toml").display(),
            v2.display()
        )),
        "{printed}"
    );
    let (passed, printed) = check(Some(&dir), &["--record"]);
    assert!(passed, "{printed}");
    assert!(
        printed.contains(&format!("records: recorded in {}.", v2.display())),
        "{printed}"
    );
    assert_eq!(std::fs::read_to_string(&v2).unwrap(), spec);
    let (passed, printed) = check(Some(&dir), &[]);
    assert!(passed, "{printed}");
    assert!(
        printed.contains(&format!("records: ok, as recorded in {}.", v2.display())),
        "{printed}"
    );

    // A spec never recorded is recorded as version 1.
    std::fs::remove_dir_all(dir.join("history")).unwrap();
    let (passed, printed) = check(Some(&dir), &[]);
    assert!(!passed, "{printed}");
    assert!(
        printed.contains("records: no version recorded; record it"),
        "{printed}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
