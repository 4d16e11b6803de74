//! `hookd check-config FILE`: effective values with secrets redacted, exit 0;
//! exit 2 with the key and the reason otherwise.

use std::process::{Command, Output};

fn check(text: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), "# rotated\nfile-token-SECRET\n").unwrap();
    let file = dir.path().join("hookd.toml");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .arg("check-config")
        .arg(&file)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    (output, dir)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_valid_file_prints_its_effective_values_redacted() {
    let (output, _dir) = check(
        "[ingest]\nlisten = \"0.0.0.0:8443\"\ntokens = [\"inline-token-SECRET\"]\n\
         tokens_file = \"tokens\"\n[delivery]\ntimeout = \"5s\"\n",
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!stdout.contains("SECRET"), "{stdout}");
    for want in [
        "listen = \"0.0.0.0:8443\"",
        "tokens = [\"<redacted>\"]",
        "# ingest tokens: 2 (1 in ingest.tokens, 1 in ingest.tokens_file ",
        "timeout = \"5s\"",
        // Defaults show too: these are the values in force.
        "retry_schedule = [\"5s\", \"5m\", \"30m\", \"2h\", \"5h\", \"10h\", \"10h\"]",
        "path = \"/var/lib/hookd\"",
        "level = \"info\"",
    ] {
        assert!(stdout.contains(want), "{want:?} missing:\n{stdout}");
    }
}

#[test]
fn an_invalid_file_exits_2_naming_the_key_and_reason() {
    let cases = [
        (
            "[delivery]\ntimeout = \"soon\"\n",
            "delivery.timeout",
            "not a duration",
        ),
        (
            "[ingest]\nlisten_on = \"x\"\n",
            "ingest.listen_on",
            "unknown field",
        ),
        (
            "[ingest]\nlisten = \"0.0.0.0:80\"\n",
            "ingest.tokens",
            "no tokens",
        ),
        (
            "[ingest]\ntokens_file = \"absent\"\n",
            "ingest.tokens_file",
            "cannot read",
        ),
        (
            "[delivery]\nmax_in_flight = 0\n",
            "delivery.max_in_flight",
            "1 to 10000",
        ),
    ];
    for (config, key, reason) in cases {
        let (output, _dir) = check(config);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{config}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(reason),
            "{config}: {stderr}"
        );
        assert!(output.stdout.is_empty());
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["check-config", "/nonexistent/hookd.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("cannot read"));
}
