//! Exit codes and messages of failures: what to set, never the secret itself.

use crate::helpers::{path_arg, spawn_pipeline, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_or_wrong_token_exits_4_naming_the_setting_without_showing_it() {
    let pipeline = spawn_pipeline().await;
    let path = pipeline.file("tiny.csv", b"created_timestamp\n");

    let missing = pipeline
        .sluice(&["upload", path_arg(&path)])
        .env_remove("SLUICE_UPLOAD_TOKEN")
        .run()
        .await;
    assert_eq!(missing.code, 4, "{missing:?}");
    assert!(
        missing.stderr.contains("answered 401")
            && missing.stderr.contains("set SLUICE_UPLOAD_TOKEN"),
        "{missing:?}"
    );

    let wrong = pipeline
        .sluice(&["upload", path_arg(&path)])
        .env("SLUICE_UPLOAD_TOKEN", "wrong-upload-token-4711")
        .run()
        .await;
    assert_eq!(wrong.code, 4, "{wrong:?}");
    assert!(
        wrong.stderr.contains("check SLUICE_UPLOAD_TOKEN"),
        "{wrong:?}"
    );
    assert!(!wrong.stderr.contains("4711"), "{wrong:?}");

    let admin = pipeline
        .sluice(&["keys", "list"])
        .env("SLUICE_ADMIN_TOKEN", "wrong-admin-token-4712")
        .run()
        .await;
    assert_eq!(admin.code, 4, "{admin:?}");
    assert!(
        admin.stderr.contains("check SLUICE_ADMIN_TOKEN"),
        "{admin:?}"
    );
    assert!(!admin.stderr.contains("4712") && !admin.stdout.contains("4712"));

    let no_key = pipeline
        .sluice(&["query", "aggregated_game_rounds"])
        .run()
        .await;
    assert_eq!(no_key.code, 4, "{no_key:?}");
    assert!(no_key.stderr.contains("set SLUICE_API_KEY"), "{no_key:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_filter_exits_4_with_the_gateways_explanation_and_costs_nothing() {
    let pipeline = spawn_pipeline().await;
    let (id, key) = pipeline.create_key(5).await;
    let bad = pipeline
        .sluice(&["query", "aggregated_game_rounds", "player_id=not-hex"])
        .env("SLUICE_API_KEY", &key)
        .run()
        .await;
    assert_eq!(bad.code, 4, "{bad:?}");
    assert!(
        bad.stderr.contains("answered 400") && bad.stderr.contains("player_id"),
        "{bad:?}"
    );
    assert!(!bad.stderr.contains(&key));
    let shown = pipeline
        .sluice(&["keys", "show", &id, "--json"])
        .run()
        .await;
    assert_eq!(shown.json()["credits"], 5);

    // A dataset endpoint is a plain GET on the gateway (this gateway has none: 404).
    let dataset = pipeline
        .sluice(&["query", "datasets/rounds/daily"])
        .env("SLUICE_API_KEY", &key)
        .run()
        .await;
    assert_eq!(dataset.code, 4, "{dataset:?}");
    assert!(dataset.stderr.contains("answered 404"), "{dataset:?}");

    // Not a name=value: the command line is wrong (clap's code).
    let usage = pipeline
        .sluice(&["query", "aggregated_game_rounds", "player_id"])
        .run()
        .await;
    assert_eq!(usage.code, 2, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_service_exits_5_and_says_which_setting_points_there() {
    let pipeline = spawn_pipeline().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = pipeline
        .sluice(&["keys", "list"])
        .env("SLUICE_GATEWAY_URL", &format!("http://127.0.0.1:{dead}"))
        .run()
        .await;
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("SLUICE_GATEWAY_URL"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_files_go_on_past_a_failure_and_exit_with_the_highest_code() {
    let pipeline = spawn_pipeline().await;
    let mut options = sluice_testkit::generate::Options::new(20);
    options.bad_row_every = Some(10);
    let bad_rows = pipeline.file(
        "bad_rows.csv",
        &sluice_testkit::generate::export(&options).bytes,
    );
    let missing = pipeline.dir.join("missing.csv");
    let run = pipeline
        .sluice(&[
            "upload",
            path_arg(&missing),
            path_arg(&bad_rows),
            "--wait",
            "0",
        ])
        .run()
        .await;
    // The second file was uploaded (with rejected rows); a failed file's code wins over 3.
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("error: {}: No such file", missing.display())),
        "{run:?}"
    );
    assert!(run.stderr.contains("1 of 2 files failed"), "{run:?}");
    assert!(
        run.stdout.starts_with("bad_rows.csv: upload ")
            && run.stdout.contains("18 accepted, 2 rejected"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_come_from_the_config_file_below_the_environment() {
    let pipeline = spawn_pipeline().await;
    let config = pipeline.dir.join("config").join("sluice");
    std::fs::create_dir_all(&config).unwrap();
    let file = config.join("config.toml");
    std::fs::write(
        &file,
        format!(
            "gateway_url = \"{}\"\nadmin_token = \"{}\"\n",
            pipeline.gateway_url, ADMIN_TOKEN
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    // From the default file alone.
    let from_file = pipeline
        .sluice(&["keys", "list"])
        .env_remove("SLUICE_ADMIN_TOKEN")
        .env_remove("SLUICE_GATEWAY_URL")
        .run()
        .await;
    assert_eq!(from_file.code, 0, "{from_file:?}");
    assert!(from_file.stderr.is_empty(), "{from_file:?}");

    // The environment wins over the file, and a flag over the environment.
    let env_wins = pipeline
        .sluice(&["keys", "list"])
        .env("SLUICE_ADMIN_TOKEN", "wrong-admin-token")
        .env_remove("SLUICE_GATEWAY_URL")
        .run()
        .await;
    assert_eq!(env_wins.code, 4, "{env_wins:?}");
    let flag_wins = pipeline
        .sluice(&["keys", "list", "--admin-token", ADMIN_TOKEN])
        .env("SLUICE_ADMIN_TOKEN", "wrong-admin-token")
        .run()
        .await;
    assert_eq!(flag_wins.code, 0, "{flag_wins:?}");

    // --config names another file; one others can read is used, with a warning.
    let other = pipeline.file("other.toml", b"admin_token = \"wrong-admin-token\"\n");
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let named = pipeline
        .sluice(&["keys", "list", "--config", path_arg(&other)])
        .env_remove("SLUICE_ADMIN_TOKEN")
        .run()
        .await;
    assert_eq!(named.code, 4, "{named:?}");
    assert!(named.stderr.contains("chmod 600"), "{named:?}");
    assert!(!named.stderr.contains("wrong-admin-token"), "{named:?}");
}
