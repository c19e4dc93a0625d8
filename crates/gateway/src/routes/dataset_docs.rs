//! The OpenAPI operations of the catalog's dataset endpoints, added to the document at start:
//! one per endpoint, at its literal path `/datasets/<dataset>/<endpoint>`, typed from its spec.
//!
//! Its query parameters accept exactly what the handler reads: a column filter what
//! `Plan::filter_value` takes (its `pattern` says so, white space as `str::trim` drops it),
//! `from`, `to` and `granularity` as `GET /aggregated_game_rounds` documents them (the same
//! parser, [`crate::query::parse_instant`]), `limit` and `cursor` as [`crate::rows`] reads them.
//! Its page's rows are typed as the handler answers them ([`crate::rows::typed`], and
//! `rollups::answer_row` for rollups). Its responses are those of the generic
//! `GET /datasets/{name}/{endpoint}` (but 404: the path names an endpoint that exists).

use sluice_schema::dataset::endpoint::{Bucket, Endpoint, EndpointKind, Function};
use sluice_schema::dataset::endpoint::{FROM, GRANULARITY, TO};
use sluice_schema::dataset::{Catalog, Check, Column, Dataset, Kind, Source};
use sluice_schema::docs;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, Parameter};
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, KnownFormat, Object, ObjectBuilder};
use utoipa::openapi::schema::{Schema, SchemaFormat};
use utoipa::openapi::schema::{SchemaType, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{OpenApi, RefOr, Required};
use utoipa::IntoParams;

use super::rounds;
use crate::query::RawRoundsQuery;

/// The operation every dataset endpoint is also served by.
pub const GENERIC: &str = "/datasets/{name}/{endpoint}";

/// One character `str::trim` drops (Unicode `White_Space`), as a JSON Schema (ECMA-262) class.
pub const WHITE_SPACE: &str =
    r"[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028-\u2029\u202F\u205F\u3000]";

/// Adds an operation per endpoint of `catalog`'s datasets to `document`, which holds the
/// generic one.
pub fn add_operations(document: &mut OpenApi, catalog: &Catalog) {
    add_rounds_alias(document);
    let generic = docs::generic_operation(document, GENERIC, HttpMethod::Get);
    for dataset in catalog.iter() {
        for endpoint in &dataset.spec.endpoints {
            let path = format!("/datasets/{}/{}", dataset.spec.name, endpoint.name);
            let operation = operation(&generic, dataset, endpoint);
            document
                .paths
                .add_path_operation(path, vec![HttpMethod::Get], operation);
        }
    }
}

/// `game_rounds`' endpoint among the datasets' ([`rounds::ALIAS`]): the operation of
/// `GET /aggregated_game_rounds`, which answers it.
fn add_rounds_alias(document: &mut OpenApi) {
    let rounds = (document.paths.paths.get("/aggregated_game_rounds"))
        .and_then(|item| item.get.clone())
        .expect("`GET /aggregated_game_rounds` is annotated");
    let mut alias = rounds;
    alias.operation_id = Some("datasets.game_rounds.aggregated".to_owned());
    alias.tags = Some(vec!["datasets".to_owned()]);
    alias.summary = Some("`GET /aggregated_game_rounds`, as `game_rounds`' endpoint".to_owned());
    document
        .paths
        .add_path_operation(rounds::ALIAS, vec![HttpMethod::Get], alias);
}

/// `endpoint`'s operation: the generic operation's answers, its own parameters and rows.
fn operation(generic: &Operation, dataset: &Dataset, endpoint: &Endpoint) -> Operation {
    let spec = &dataset.spec;
    let mut responses = docs::instance_responses(generic);
    if let Some(RefOr::T(ok)) = responses.responses.get_mut("200") {
        for content in ok.content.values_mut() {
            content.schema = Some(page(dataset, endpoint).into());
        }
    }
    let what = match endpoint.kind {
        EndpointKind::Rows => {
            "The latest version of each record, in the order (time, identity).".to_owned()
        }
        EndpointKind::Rollup => format!(
            "Its measures per {} and group, in the order (bucket, group), exact like \
             `GET /aggregated_game_rounds`.",
            match endpoint.bucket {
                Some(Bucket::Hour) => "hour",
                Some(Bucket::Day) => "day",
                _ => "hour or day (`granularity`)",
            }
        ),
    };
    let description = format!(
        "{doc}\n\n{what} Each page costs {cost} credit{s}, charged like \
         `GET /aggregated_game_rounds` (a malformed request costs nothing, a failed query is \
         refunded). An empty parameter is as if it were not sent; a parameter not listed here is a 400.",
        doc = endpoint.doc.as_deref().unwrap_or_default(),
        cost = endpoint.cost,
        s = if endpoint.cost == 1 { "" } else { "s" },
    );
    OperationBuilder::new()
        .tag("datasets")
        .summary(Some(format!("{} / {}", spec.name, endpoint.name)))
        .description(Some(description.trim_start()))
        .operation_id(Some(format!("datasets.{}.{}", spec.name, endpoint.name)))
        .parameters(Some(parameters(dataset, endpoint)))
        .securities(Some([SecurityRequirement::new(
            "api_key",
            Vec::<String>::new(),
        )]))
        .responses(responses)
        .build()
}

/// The endpoint's query parameters: its filters in the spec's order, then `limit` and `cursor`.
fn parameters(dataset: &Dataset, endpoint: &Endpoint) -> Vec<Parameter> {
    let rounds = RawRoundsQuery::into_params(|| Some(ParameterIn::Query));
    let as_rounds = |name: &str| {
        rounds
            .iter()
            .find(|p| p.name == name)
            .expect("`GET /aggregated_game_rounds` takes it")
            .clone()
    };
    let mut parameters: Vec<Parameter> = endpoint
        .filters
        .iter()
        .map(|name| match name.as_str() {
            FROM | TO | GRANULARITY => as_rounds(name),
            column => {
                let column = dataset
                    .spec
                    .column(column)
                    .expect("a checked spec filters on its columns");
                let (schema, accepts) = filter(column);
                let doc = column
                    .doc
                    .as_deref()
                    .map_or(String::new(), |d| format!(" {d}"));
                query(
                    column.name.as_str(),
                    schema,
                    format!(
                        "Only rows whose `{}` is this value.{doc} {accepts}",
                        column.name
                    ),
                )
            }
        })
        .collect();
    let max = endpoint.max_page_size;
    let size = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(max));
    parameters.push(query(
        "limit",
        // Empty: as if not sent.
        AnyOfBuilder::new()
            .item(size)
            .item(string().max_length(Some(0))),
        format!("Rows per page, 1 to {max}; default {}.", endpoint.page_size),
    ));
    parameters.push(query(
        "cursor",
        string().pattern(Some("^[A-Za-z0-9_-]*$")).build(),
        "The `next_cursor` of the previous page, to get the page after it. Only valid with the \
         same filters (`limit` may change); an altered cursor or one sent with other filters is \
         a 400 (not charged)."
            .to_owned(),
    ));
    parameters
}

/// An optional query parameter.
fn query(name: &str, schema: impl Into<RefOr<Schema>>, description: String) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A column filter's schema, and what it accepts in words: exactly what
/// `Plan::filter_value` reads (an empty value is no filter). Codes and integers are trimmed
/// (`str::trim`) first.
fn filter(column: &Column) -> (Object, String) {
    let trimmed = |value: &str| format!("^({WHITE_SPACE}*({value}){WHITE_SPACE}*)?$");
    let i64_max = at_most(i64::MAX.unsigned_abs());
    let (pattern, accepts) = match (column.source, column.kind, column.check) {
        // The upload a record arrived in is no cell a filter could be read as.
        (Source::Upload, _, _) => {
            let schema = string().max_length(Some(0)).build();
            let accepts = "It cannot be filtered on: any value is refused.";
            return (schema, accepts.to_owned());
        }
        (_, Kind::String, None) => (
            r"^[^\u0000]*$".to_owned(),
            "Any text without a NUL character, compared exactly.",
        ),
        (_, Kind::String, Some(Check::Hex32)) => (
            trimmed("[0-9A-Fa-f]{32}"),
            "32 hexadecimal characters, either case (white space around them is ignored).",
        ),
        (_, Kind::String, Some(Check::Alpha3)) => (
            trimmed("[A-Za-z]{3}"),
            "3 ASCII letters, either case (white space around them is ignored).",
        ),
        (_, Kind::Int64, _) => (
            trimmed(&format!(r"[+-]?0*{i64_max}|-0*{}", i64::MIN.unsigned_abs())),
            "An integer from -9223372036854775808 to 9223372036854775807 in decimal digits, \
             with an optional sign and leading zeros (white space around it is ignored).",
        ),
        (_, Kind::Uint64, _) => (
            trimmed(&format!(r"\+?0*{i64_max}|-0+")),
            "An integer from 0 to 9223372036854775807 in decimal digits, with an optional `+` \
             and leading zeros (white space around it is ignored).",
        ),
        (_, kind, _) => unreachable!("a checked spec filters no {} column", kind.name()),
    };
    (string().pattern(Some(pattern)).build(), accepts.to_owned())
}

/// A regular expression of the decimal numbers from 0 to `max`, without leading zeros.
fn at_most(max: u64) -> String {
    let digits = max.to_string();
    let len = digits.len();
    let mut alternatives = Vec::new();
    if len > 1 {
        alternatives.push(format!("[0-9]{{1,{}}}", len - 1));
    }
    for (i, digit) in digits.bytes().enumerate() {
        let digit = digit - b'0';
        let rest = len - i - 1;
        let lower = match digit {
            0 => continue,
            1 => "0".to_owned(),
            _ => format!("[0-{}]", digit - 1),
        };
        let rest = match rest {
            0 => String::new(),
            _ => format!("[0-9]{{{rest}}}"),
        };
        alternatives.push(format!("{}{lower}{rest}", &digits[..i]));
    }
    alternatives.push(digits);
    format!("({})", alternatives.join("|"))
}

/// A page of `endpoint`: `data` (its rows), `next_cursor` and `has_more`.
fn page(dataset: &Dataset, endpoint: &Endpoint) -> Object {
    let row = match endpoint.kind {
        EndpointKind::Rows => rows_row(dataset),
        EndpointKind::Rollup => rollup_row(dataset, endpoint),
    };
    ObjectBuilder::new()
        .property("data", ArrayBuilder::new().items(row))
        .required("data")
        .property(
            "next_cursor",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(
                    "Send it as `cursor` (with the same filters) for the next page; `null`: \
                     this is the last.",
                )),
        )
        .required("next_cursor")
        .property("has_more", ObjectBuilder::new().schema_type(Type::Boolean))
        .required("has_more")
        .build()
}

/// A row of a rows endpoint: every column, as [`crate::rows::typed`] answers it.
fn rows_row(dataset: &Dataset) -> Object {
    let mut row = ObjectBuilder::new();
    for column in &dataset.spec.columns {
        let value = value(column.kind, column.nullable).description(column.doc.clone());
        row = row.property(&column.name, value).required(&column.name);
    }
    row.build()
}

/// A row of a rollup endpoint, as `rollups::answer_row` answers it: the bucket's start (`hour`
/// or `day`; either, as `granularity` says, for a chosen bucket), the group-by values, then the
/// measures.
fn rollup_row(dataset: &Dataset, endpoint: &Endpoint) -> Object {
    let spec = &dataset.spec;
    let buckets: &[&str] = match endpoint.bucket {
        Some(Bucket::Hour) => &["hour"],
        Some(Bucket::Day) => &["day"],
        _ => &["hour", "day"],
    };
    let mut row = ObjectBuilder::new();
    for bucket in buckets {
        let start =
            value(Kind::Timestamp, false).description(Some(format!("The {bucket}'s start (UTC).")));
        row = row.property(*bucket, start);
        if buckets.len() == 1 {
            row = row.required(*bucket);
        }
    }
    let column = |name: &str| spec.column(name).expect("a checked spec has its columns");
    for name in &endpoint.group_by {
        let group = column(name);
        let value = value(group.kind, false).description(group.doc.clone());
        row = row.property(name, value).required(name);
    }
    for measure in &endpoint.measures {
        let (kind, nullable, what) = match (measure.function, measure.column.as_deref()) {
            (Function::Count, _) => (Kind::Uint64, false, "Records".to_owned()),
            // A mean of no values is null.
            (Function::Avg, Some(name)) => (Kind::Float64, true, format!("The mean of `{name}`")),
            (Function::Sum, Some(name)) => {
                let summed = column(name);
                (summed.kind, summed.nullable, format!("The sum of `{name}`"))
            }
            (_, None) => unreachable!("a checked spec's sums and means name their column"),
        };
        let value =
            value(kind, nullable).description(Some(format!("{what} in the bucket and group.")));
        row = row.property(&measure.name, value).required(&measure.name);
    }
    row.build()
}

/// A value of `kind` as answers give it: integers and floats as numbers; decimals (exact) and
/// strings as strings; timestamps as RFC 3339 strings.
fn value(kind: Kind, nullable: bool) -> ObjectBuilder {
    let (json, format) = match kind {
        Kind::Int64 | Kind::Uint64 => (Type::Integer, None),
        Kind::Float32 | Kind::Float64 => (Type::Number, None),
        Kind::Decimal | Kind::String => (Type::String, None),
        Kind::Timestamp => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
        ),
    };
    let schema_type = match nullable {
        true => SchemaType::from_iter([json, Type::Null]),
        false => SchemaType::Type(json),
    };
    let value = ObjectBuilder::new().schema_type(schema_type).format(format);
    match kind {
        Kind::Uint64 => value.minimum(Some(0)),
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::docs::tests::{document, not_white_space};
    use super::*;

    fn shipped() -> Catalog {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        Catalog::read(&dir).unwrap()
    }

    /// The names of an operation's parameters.
    fn names(operation: &Value) -> Vec<&str> {
        let parameters = operation["parameters"].as_array().unwrap();
        parameters
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect()
    }

    /// Each property of an object schema, by its JSON type.
    fn types(object: &Value) -> Value {
        let properties = object["properties"].as_object().unwrap();
        let types = properties
            .iter()
            .map(|(name, schema)| (name.clone(), schema["type"].clone()));
        Value::Object(types.collect())
    }

    fn parameter<'a>(operation: &'a Value, name: &str) -> &'a Value {
        let parameters = operation["parameters"].as_array().unwrap();
        parameters.iter().find(|p| p["name"] == name).unwrap()
    }

    #[test]
    fn white_space_is_what_trimming_drops() {
        assert_eq!(
            format!("[^{}", &WHITE_SPACE[1..]),
            not_white_space(),
            "WHITE_SPACE"
        );
    }

    #[test]
    fn every_shipped_endpoint_is_an_operation_typed_by_its_spec() {
        let document = document(&shipped());
        let paths = &document["paths"];
        assert!(paths[GENERIC]["get"].is_object(), "the generic one stays");
        let rounds = &paths["/aggregated_game_rounds"]["get"];

        let rows = &paths["/datasets/records/rows"]["get"];
        assert_eq!(rows["tags"], json!(["datasets"]));
        assert_eq!(rows["security"], json!([{"api_key": []}]));
        assert!(rows["description"]
            .as_str()
            .unwrap()
            .starts_with("The records themselves (the latest version of each), by country"));
        assert_eq!(names(rows), ["country", "from", "to", "limit", "cursor"]);
        let country = &parameter(rows, "country")["schema"];
        let w = WHITE_SPACE;
        assert_eq!(
            country,
            &json!({"type": "string", "pattern": format!("^({w}*([A-Za-z]{{3}}){w}*)?$")})
        );
        for bound in ["from", "to"] {
            assert_eq!(parameter(rows, bound), parameter(rounds, bound), "{bound}");
        }
        assert_eq!(
            parameter(rows, "limit")["schema"]["anyOf"],
            json!([
                {"type": "integer", "minimum": 1, "maximum": 1000},
                {"type": "string", "maxLength": 0},
            ])
        );
        let statuses: Vec<&String> = rows["responses"].as_object().unwrap().keys().collect();
        assert_eq!(statuses, ["200", "400", "401", "402", "429", "503", "504"]);
        let ok = &rows["responses"]["200"];
        assert_eq!(
            ok["headers"],
            paths[GENERIC]["get"]["responses"]["200"]["headers"]
        );
        let page = &ok["content"]["application/json"]["schema"];
        assert_eq!(page["required"], json!(["data", "next_cursor", "has_more"]));
        let row = &page["properties"]["data"]["items"];
        assert_eq!(
            types(row),
            json!({"id": "integer", "created_at": "string", "country": "string",
                "category": "string", "amount": "string", "upload_id": "string"})
        );
        assert_eq!(row["properties"]["created_at"]["format"], "date-time");
        assert_eq!(
            row["required"],
            json!([
                "id",
                "created_at",
                "country",
                "category",
                "amount",
                "upload_id"
            ])
        );

        let by_type = &paths["/datasets/events/by_type"]["get"];
        assert_eq!(
            names(by_type),
            ["event_type", "from", "to", "granularity", "limit", "cursor"]
        );
        assert_eq!(
            parameter(by_type, "event_type")["schema"]["pattern"],
            r"^[^\u0000]*$"
        );
        assert_eq!(
            parameter(by_type, "granularity")["schema"]["enum"],
            json!(["hour", "day", ""])
        );
        let row = &by_type["responses"]["200"]["content"]["application/json"]["schema"]
            ["properties"]["data"]["items"];
        assert_eq!(
            types(row),
            json!({"hour": "string", "day": "string", "event_type": "string",
                "events": "integer", "value": ["string", "null"]})
        );
        assert_eq!(row["required"], json!(["event_type", "events", "value"]));

        let daily = &paths["/datasets/amazon_reviews/daily_by_asin"]["get"];
        assert_eq!(names(daily), ["asin", "from", "to", "limit", "cursor"]);
        let row = &daily["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
            ["data"]["items"];
        assert_eq!(
            row["required"],
            json!(["day", "asin", "reviews", "avg_rating"])
        );
        assert_eq!(row["properties"]["day"]["format"], "date-time");
        assert_eq!(
            types(row),
            json!({"day": "string", "asin": "string", "reviews": "integer",
                "avg_rating": ["number", "null"]})
        );
    }

    #[test]
    fn without_a_directory_the_generic_operation_and_the_rounds_under_their_dataset() {
        let document = document(&Catalog::builtin());
        let paths = document["paths"].as_object().unwrap();
        let datasets: Vec<&String> = (paths.keys())
            .filter(|path| path.starts_with("/datasets/"))
            .collect();
        assert_eq!(datasets, [rounds::ALIAS, GENERIC]);
        let (alias, rounds) = (
            &paths[rounds::ALIAS]["get"],
            &paths["/aggregated_game_rounds"]["get"],
        );
        assert_eq!(alias["parameters"], rounds["parameters"]);
        assert_eq!(alias["responses"], rounds["responses"]);
        assert_eq!(alias["operationId"], "datasets.game_rounds.aggregated");
    }

    /// A dataset with a filter of every kind, read from a directory of its own.
    fn every_filter() -> Dataset {
        let spec = r#"
            name = "filters"
            identity = ["u"]
            kafka_key = "u"
            time = "t"
            avro = { name = "Filters", namespace = "io.sluice" }
            columns = [
                { name = "t", type = "timestamp", format = "epoch_s" },
                { name = "s", type = "string" },
                { name = "h", type = "string", check = "hex32" },
                { name = "a", type = "string", check = "alpha3" },
                { name = "i", type = "int64" },
                { name = "u", type = "uint64" },
                { name = "up", type = "string", source = "upload" },
            ]

            [[endpoints]]
            name = "rows"
            kind = "rows"
            filters = ["s", "h", "a", "i", "u", "up"]
        "#;
        let dir = std::env::temp_dir().join(format!("sluice-dataset-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("filters.toml"), spec).unwrap();
        let catalog = Catalog::read(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        catalog.get("filters").unwrap().clone()
    }

    /// Whether `value` meets `schema` (a string's `pattern` and `maxLength`).
    fn allows(schema: &Value, value: &str) -> bool {
        let pattern = schema["pattern"].as_str().unwrap_or("");
        let max = schema["maxLength"].as_u64().unwrap_or(u64::MAX);
        regex::Regex::new(pattern).unwrap().is_match(value) && value.chars().count() as u64 <= max
    }

    #[test]
    fn each_filter_pattern_accepts_exactly_what_the_plan_reads() {
        let dataset = every_filter();
        let hex = "9ece8c4020f8aed10676cd1c56A41889";
        let probes: Vec<String> = [
            "",
            " ",
            "\t",
            "abc",
            "ABC",
            "a\0c",
            "\0",
            " usa ",
            "us",
            "usaa",
            "u s",
            "ÅSA",
            "\u{3000}usa\u{85}",
            "\u{1c}usa",
            "usa\n",
            "\u{200b}usa",
            "0",
            "-0",
            "+0",
            "-",
            "+",
            "007",
            "-5",
            " 5 ",
            "5 ",
            "\u{2028}5",
            "\u{1f}5",
            "1e3",
            "5.0",
            "٣",
            "0x10",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "00009223372036854775807",
            "-00009223372036854775808",
            "+9223372036854775807",
            "18446744073709551615",
            "99999999999999999999",
            "9300000000000000000",
            "9222999999999999999",
            "-00",
            "--5",
            "+-5",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([
            hex.to_owned(),
            format!(" {hex}\u{a0}"),
            format!("{hex}0"),
            hex[1..].to_owned(),
            format!("\u{feff}{hex}"),
            hex.replace('e', "g"),
            hex.to_uppercase(),
        ])
        .collect();
        for column in &dataset.spec.columns[1..] {
            let schema = serde_json::to_value(filter(column).0).unwrap();
            let mut accepted = 0;
            for probe in &probes {
                let read =
                    probe.is_empty() || dataset.plan.filter_value(&column.name, probe).is_ok();
                assert_eq!(
                    allows(&schema, probe),
                    read,
                    "`{}` = {probe:?} ({schema})",
                    column.name
                );
                accepted += usize::from(read && !probe.is_empty());
            }
            let expected = match column.name.as_str() {
                "up" => 0,
                _ => 3,
            };
            assert!(
                accepted >= expected,
                "`{}` accepts too little to test",
                column.name
            );
        }
    }

    #[test]
    fn numbers_up_to_a_bound_are_matched_exactly() {
        for max in [
            0,
            1,
            5,
            9,
            10,
            19,
            20,
            100,
            909,
            1000,
            4321,
            i64::MAX.unsigned_abs(),
        ] {
            let regex = regex::Regex::new(&format!("^{}$", at_most(max))).unwrap();
            let near = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 4320, 4322]
                .into_iter()
                .chain([max.saturating_sub(1), max, max.saturating_add(1)])
                .chain((0..=1200).step_by(7));
            for number in near {
                assert_eq!(
                    regex.is_match(&number.to_string()),
                    number <= max,
                    "{number} against {max}: {regex}"
                );
            }
        }
    }
}
