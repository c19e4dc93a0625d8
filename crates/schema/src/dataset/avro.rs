//! A dataset's Avro record schema, generated from its [`Spec`]: every column a field, in order;
//! integers, timestamps (milliseconds) and decimals (scaled integers) as `long`, nullable
//! columns as `["null", T]` with a `null` default.

use serde_json::{json, Map, Value};

use super::{Column, Kind, Spec};

/// The Avro schema of `spec`'s records, as JSON.
pub fn schema(spec: &Spec) -> Value {
    let mut record = Map::new();
    record.insert("type".into(), json!("record"));
    record.insert("name".into(), json!(spec.avro.name));
    record.insert("namespace".into(), json!(spec.avro.namespace));
    if let Some(doc) = &spec.doc {
        record.insert("doc".into(), json!(doc));
    }
    let fields: Vec<Value> = spec.columns.iter().map(field).collect();
    record.insert("fields".into(), Value::Array(fields));
    Value::Object(record)
}

fn field(column: &Column) -> Value {
    let kind = match column.kind {
        Kind::String => "string",
        Kind::Int64 | Kind::Uint64 | Kind::Decimal | Kind::Timestamp => "long",
        Kind::Float32 => "float",
        Kind::Float64 => "double",
    };
    let mut field = Map::new();
    field.insert("name".into(), json!(column.name));
    if column.nullable {
        field.insert("type".into(), json!(["null", kind]));
        field.insert("default".into(), Value::Null);
    } else {
        field.insert("type".into(), json!(kind));
    }
    if let Some(default) = &column.default {
        field.insert("default".into(), json!(default));
    }
    if let Some(doc) = &column.doc {
        field.insert("doc".into(), json!(doc));
    }
    Value::Object(field)
}

#[cfg(test)]
mod tests {
    use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};

    use super::super::GAME_ROUNDS_TOML;
    use super::*;

    #[test]
    fn the_game_rounds_spec_generates_todays_avro_schema_and_fingerprint() {
        let spec = Spec::parse("datasets/game_rounds.toml", GAME_ROUNDS_TOML).unwrap();
        let generated = schema(&spec);
        // The same document: every name, type, default and doc, fields in the same order.
        let today: Value = serde_json::from_str(crate::avro::SCHEMA_JSON).unwrap();
        assert_eq!(generated, today);
        let parsed = apache_avro::Schema::parse(&generated).unwrap();
        let header = RabinFingerprintHeader::from_schema(&parsed).build_header();
        assert_eq!(header, crate::avro::GameRoundCodec::get().header());
    }
}
