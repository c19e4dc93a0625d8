//! The Kafka wire format, read back by an independent decoder: what the producer writes must
//! decode with fastavro (Python) from the schema file alone — single-object header, fingerprint
//! and datum.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_producer::{Application, Config};
use sluice_testkit::stack::workspace_root;
use sluice_testkit::{http, kafka, unique, Stack};

#[tokio::test]
async fn records_on_the_topic_decode_with_fastavro_from_the_schema_file_alone() {
    let stack = Stack::get();
    let python_path = stack.python_path.clone().expect(
        "SLUICE_PYTHONPATH (fastavro) is not set: start the services with `scripts/dev services`",
    );
    let mut config = Config::with_endpoints(&stack.kafka_brokers, &stack.redis_url);
    config.listen_addr = "127.0.0.1:0".into();
    config.redis_key_prefix = format!("{}:", unique("producer"));
    config.transactional_id_prefix = Some(unique("producer"));
    config.topic = unique("wire_format");
    config.topic_partitions = 1;
    let topic = config.topic.clone();
    let producer = Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", producer.port());
    tokio::spawn(producer.run_until_stopped());

    let csv =
        "created_timestamp,game_instance_id,user_id,game_id,real_amount_bet,bonus_amount_bet,\
               real_amount_win,bonus_amount_win,game_name,provider\n\
               2019-10-22 08:20:42,20000,9ece8c4020f8aed10676cd1c56a41889,24002,2.5,NaN,,0.05,\
               \"Rich Wilde and the \"\"Tome\"\" of Madness\",Play'n GO\n";
    let upload = http::upload_csv(&url, csv.as_bytes().to_vec(), "text/csv").await;
    assert_eq!(upload.status, 200, "{}", upload.body);
    let messages = kafka::consume(&topic, 1, 1, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 1);

    let root = workspace_root();
    let mut decoder = Command::new("python3")
        .arg(root.join("scripts/avro_decode.py"))
        .arg(root.join("schemas/game_round.avsc"))
        .env("PYTHONPATH", python_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let hex: String = messages[0]
        .payload
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    writeln!(decoder.stdin.take().unwrap(), "{hex}").unwrap();
    let output = decoder.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "fastavro refused the message: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        decoded,
        serde_json::json!({
            "created_timestamp": 1_571_732_442_000_i64,
            "game_instance_id": 20000,
            "user_id": "9ece8c4020f8aed10676cd1c56a41889",
            "game_id": 24002,
            "real_amount_bet": 25000,
            "bonus_amount_bet": null,
            "real_amount_win": null,
            "bonus_amount_win": 500,
            "game_name": "Rich Wilde and the \"Tome\" of Madness",
            "provider": "Play'n GO",
            "upload_id": upload.body["upload_id"],
        })
    );
}
