//! A dataset's Avro record schema, generated from its [`Spec`]: every column a field, in order;
//! integers, timestamps (milliseconds) and decimals (scaled integers) as `long`, nullable
//! columns as `["null", T]` with a `null` default, a column's `default` as the field's (so a
//! reader of this schema resolves records written before the column existed, by Avro's rules).

use integer_encoding::VarInt;
use serde_json::{json, Map, Value};

use super::{plan, Column, Kind, Spec};

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
    } else {
        field.insert("type".into(), json!(kind));
    }
    if let Some(default) = default(column) {
        field.insert("default".into(), default);
    }
    if let Some(doc) = &column.doc {
        field.insert("doc".into(), json!(doc));
    }
    Value::Object(field)
}

/// The field's default in Avro's JSON form, decoded from the datum the plan writes for it.
fn default(column: &Column) -> Option<Value> {
    let datum = plan::default_datum(column).expect("a checked spec's default is a value")?;
    let long = |bytes: &[u8]| i64::decode_var(bytes).expect("a long written").0;
    let value = match column.kind {
        _ if column.nullable => Value::Null,
        Kind::String => {
            let (_, read) = i64::decode_var(&datum).expect("a length written");
            json!(std::str::from_utf8(&datum[read..]).expect("text written"))
        }
        Kind::Int64 | Kind::Uint64 | Kind::Decimal | Kind::Timestamp => json!(long(&datum)),
        Kind::Float32 => json!(f32::from_le_bytes(datum[..4].try_into().expect("4 bytes"))),
        Kind::Float64 => json!(f64::from_le_bytes(datum[..8].try_into().expect("8 bytes"))),
    };
    Some(value)
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

    #[test]
    fn appended_columns_carry_defaults_that_avro_resolution_reads() {
        use std::borrow::Cow;

        use apache_avro::types::Value as Avro;

        use super::super::plan::{Cell, Plan, Record};

        let records = include_str!("../../../../datasets/records.toml");
        let at = records.find("[[endpoints]]").unwrap();
        let appended = r#"
[[columns]]
name = "note"
type = "string"
nullable = true

[[columns]]
name = "rank"
type = "uint64"
default = 3

[[columns]]
name = "rate"
type = "decimal"
scale = 2
default = "1.5"

[[columns]]
name = "seen"
type = "timestamp"
format = "%Y-%m-%d"
default = "2020-01-02"

[[columns]]
name = "ratio"
type = "float64"
default = 0.25

[[columns]]
name = "code"
type = "string"
check = "alpha3"
default = "usa"

"#;
        let text = format!("{}{appended}{}", &records[..at], &records[at..]);
        let (earlier, later) = (
            Spec::parse("records.toml", records).unwrap(),
            Spec::parse("records.toml", &text).unwrap(),
        );
        let generated = schema(&later);
        let defaults: Vec<&Value> = generated["fields"].as_array().unwrap()[6..]
            .iter()
            .map(|f| &f["default"])
            .collect();
        let expected = [
            json!(null),
            json!(3),
            json!(150),
            json!(1_577_923_200_000_i64),
            json!(0.25),
            json!("USA"),
        ];
        assert_eq!(defaults, expected.iter().collect::<Vec<_>>());

        // A record written under the earlier schema, read under the later one by apache-avro.
        let mut record = Record::new();
        let cells = ["7", "2024-01-02 03:04:05", "USA", "Books", "10.5"];
        Plan::compile(&earlier)
            .encode(1, "u", true, &mut record, |c| {
                Ok(Some(Cell::Text(Cow::Borrowed(cells[c]))))
            })
            .unwrap();
        let writer = apache_avro::Schema::parse(&schema(&earlier)).unwrap();
        let reader = apache_avro::Schema::parse(&generated).unwrap();
        let mut datum = &record.bytes()[10..];
        let Avro::Record(fields) =
            apache_avro::from_avro_datum(&writer, &mut datum, Some(&reader)).unwrap()
        else {
            panic!("a record");
        };
        let read: Vec<&Avro> = fields[6..].iter().map(|(_, v)| v).collect();
        let expected = [
            Avro::Union(0, Box::new(Avro::Null)),
            Avro::Long(3),
            Avro::Long(150),
            Avro::Long(1_577_923_200_000),
            Avro::Double(0.25),
            Avro::String("USA".into()),
        ];
        assert_eq!(read, expected.iter().collect::<Vec<_>>());
    }
}
