//! `sluice keys`.

use crate::helpers::spawn_pipeline;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_created_topped_up_limited_rotated_and_revoked() {
    let pipeline = spawn_pipeline().await;

    let created = pipeline
        .sluice(&["keys", "create", "acme", "--credits", "100"])
        .run()
        .await;
    assert_eq!(created.code, 0, "{created:?}");
    let secret = created.stdout.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("sk_sluice_"), "{created:?}");
    let id = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("id "))
        .unwrap()
        .trim()
        .to_owned();

    let topped = pipeline.sluice(&["keys", "top-up", &id, "50"]).run().await;
    assert_eq!(topped.code, 0, "{topped:?}");
    assert_eq!(topped.stdout, format!("Key {id} now has 150 credits.\n"));

    let limited = pipeline
        .sluice(&["keys", "rate-limit", &id, "5/2", "--json"])
        .run()
        .await;
    assert_eq!(limited.code, 0, "{limited:?}");
    let info = limited.json();
    assert_eq!(info["rate_limit"]["requests"], 5);
    assert_eq!(info["rate_limit"]["per_seconds"], 2);
    assert_eq!(info["credits"], 150);

    let list = pipeline.sluice(&["keys", "list"]).run().await;
    assert_eq!(list.code, 0, "{list:?}");
    assert!(list.stdout.starts_with("id "), "{list:?}");
    let row = list.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        row.contains("acme") && row.contains("150") && row.contains("5/2s"),
        "{list:?}"
    );
    assert!(!list.stdout.contains("sk_sluice_"), "no secret in a list");

    // The secret works until the key is rotated with no grace…
    let query = |key: String| {
        pipeline
            .sluice(&["query", "aggregated_game_rounds"])
            .env("SLUICE_API_KEY", &key)
            .run()
    };
    assert_eq!(query(secret.clone()).await.code, 0);
    let rotated = pipeline
        .sluice(&["keys", "rotate", &id, "--grace-seconds", "0", "--json"])
        .run()
        .await;
    assert_eq!(rotated.code, 0, "{rotated:?}");
    let new_secret = rotated.json()["key"].as_str().unwrap().to_owned();
    let old = query(secret).await;
    assert_eq!(old.code, 4, "{old:?}");
    assert!(old.stderr.contains("check SLUICE_API_KEY"), "{old:?}");
    assert_eq!(query(new_secret.clone()).await.code, 0);

    // …and no secret of it works once it is revoked.
    let revoked = pipeline.sluice(&["keys", "revoke", &id]).run().await;
    assert_eq!(revoked.code, 0, "{revoked:?}");
    assert!(revoked.stdout.contains("revoked     true"), "{revoked:?}");
    assert_eq!(query(new_secret).await.code, 4);
    let shown = pipeline
        .sluice(&["keys", "show", &id, "--json"])
        .run()
        .await;
    assert_eq!(shown.json()["revoked"], true);
    assert_eq!(shown.json()["credits"], 148);

    let unknown = pipeline
        .sluice(&["keys", "show", "0000000000000000"])
        .run()
        .await;
    assert_eq!(unknown.code, 4, "{unknown:?}");
    assert!(unknown.stderr.contains("sluice keys list"), "{unknown:?}");
}
