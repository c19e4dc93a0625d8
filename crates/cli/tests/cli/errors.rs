//! Exit codes and messages of failures: what to set, never the secret itself.

use crate::helpers::{path_arg, spawn_pipeline};

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
