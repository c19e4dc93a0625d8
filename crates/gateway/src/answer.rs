//! Reading a page of buckets — `GET /aggregated_game_rounds`, and a dataset's rollup endpoint
//! (`crate::rollups`) — from an endpoint's rollups ([`Shape`]; docs/PROCESSING.md, "Reads"): every hour
//! of the range from the hourly rollup at its published version, except the hours not processed
//! yet (dirty in Redis) and those only partly inside the range, which are summed from their
//! current raw rows, and — for a page of days — the whole days whose day and hours are all
//! processed, taken from the daily rollup; in one statement, so no hour is counted twice or not
//! at all. The hours are read in a window that starts at the page's first bucket and widens
//! until it holds a full page or the whole range, so a page costs what its buckets cost, not
//! what the range holds.
//! Every user value is bound by the `clickhouse` crate; only numbers (hours) are spliced in.

use chrono::{DateTime, Utc};
use clickhouse::Client;
use serde::{Deserialize, Serialize};
use sluice_rollup::dirty::{DirtyHours, Snapshot};
use sluice_rollup::spec::{Period, Rollup, GAME_ROUNDS_DAILY, GAME_ROUNDS_HOURLY};
use sluice_rollup::{hour_of, DAY_SECONDS, HOUR_SECONDS};
use sluice_schema::domain::{format_scaled, TIMESTAMP_MAX_SECONDS};
use utoipa::ToSchema;

use crate::cursor::Position;
use crate::query::{Granularity, Order, RoundsQuery};
use crate::reads::Reads;

/// One bucket of the answer. Money is an exact decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the hour or day, RFC 3339 UTC. Named `hour` or `day` after the granularity.
    #[serde(skip)]
    pub start: DateTime<Utc>,
    /// `start` as the store has it (seconds since the epoch), the cursor's position.
    #[serde(skip)]
    pub start_seconds: u32,
    pub player_id: String,
    pub game_id: u64,
    #[schema(example = "12.5")]
    pub real_amount_bet: String,
    pub bonus_amount_bet: String,
    pub real_amount_win: String,
    pub bonus_amount_win: String,
    pub rounds: u64,
    /// Gross gaming revenue: bets minus wins, real and bonus together.
    #[schema(example = "9.5")]
    pub ggr: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
pub struct BucketRow {
    start: u32,
    user_id: String,
    game_id: u64,
    real_amount_bet: Option<i128>,
    bonus_amount_bet: Option<i128>,
    real_amount_win: Option<i128>,
    bonus_amount_win: Option<i128>,
    rounds: u64,
}

impl Bucket {
    /// This bucket's sort key: where the page after it starts.
    pub fn position(&self) -> Position {
        Position {
            start: self.start_seconds,
            player_id: self.player_id.clone(),
            game_id: self.game_id,
        }
    }
}

impl From<BucketRow> for Bucket {
    fn from(row: BucketRow) -> Bucket {
        let [rb, bb, rw, bw] = [
            row.real_amount_bet,
            row.bonus_amount_bet,
            row.real_amount_win,
            row.bonus_amount_win,
        ]
        .map(|v| v.unwrap_or(0));
        Bucket {
            start: DateTime::from_timestamp(i64::from(row.start), 0)
                .expect("every u32 of seconds is within chrono's range"),
            start_seconds: row.start,
            player_id: row.user_id,
            game_id: row.game_id,
            real_amount_bet: format_scaled(rb),
            bonus_amount_bet: format_scaled(bb),
            real_amount_win: format_scaled(rw),
            bonus_amount_win: format_scaled(bw),
            rounds: row.rounds,
            ggr: format_scaled(rb + bb - rw - bw),
        }
    }
}

/// Why an answer could not be read; the charge is refunded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
}

/// Where answers are read from: the rollups and their raw rows in ClickHouse, and which hours
/// and days are not processed yet in Redis (docs/PROCESSING.md); the game rounds' shape.
#[derive(Clone)]
pub struct Source {
    reads: Reads,
    redis: deadpool_redis::Pool,
    rounds: Shape,
}

impl Source {
    /// The rollups of ClickHouse database `database` through `clickhouse`, and their dirty
    /// buckets through `redis`.
    pub fn new(reads: Reads, redis: deadpool_redis::Pool, database: &str) -> Source {
        Source {
            reads,
            redis,
            rounds: Shape::game_rounds(database),
        }
    }
}

/// What a page of buckets is read from: an endpoint's hourly rollup of raw rows and, for pages
/// of days, the daily rollup of its hours, with their dirty buckets; and the page's columns.
#[derive(Debug, Clone)]
pub struct Shape {
    hourly: Rollup,
    daily: Option<Rollup>,
    hours: DirtyHours,
    days: Option<DirtyHours>,
    /// The page's columns after `start`, over the rows of the rollups and the raw hours (their
    /// bucket as `at`, the group-by columns, each measure under its rollup column's name).
    columns: String,
}

impl Shape {
    /// `hourly` (and `daily`) of database `database`, answered as `columns`.
    pub fn new(database: &str, hourly: Rollup, daily: Option<Rollup>, columns: String) -> Shape {
        Shape {
            hours: DirtyHours::of(database, &hourly),
            days: daily.as_ref().map(|daily| DirtyHours::of(database, daily)),
            hourly,
            daily,
            columns,
        }
    }

    /// The game rounds' buckets per player and game, read as [`BucketRow`]s.
    pub fn game_rounds(database: &str) -> Shape {
        // Sums of Nullable(Decimal) skip NULLs and come back as Nullable(Decimal(38, 4)).
        let columns = "user_id, game_id, \
             sum(real_amount_bet) AS real_amount_bet, sum(bonus_amount_bet) AS bonus_amount_bet, \
             sum(real_amount_win) AS real_amount_win, sum(bonus_amount_win) AS bonus_amount_win, \
             sum(rounds) AS rounds";
        let (hourly, daily) = (GAME_ROUNDS_HOURLY, GAME_ROUNDS_DAILY);
        Shape::new(database, hourly, Some(daily), columns.to_owned())
    }
}

/// A request for a page of buckets, in the rollups' terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    /// The range, in seconds: `from` included, `to` excluded.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub granularity: Granularity,
    pub order: Order,
    pub page_size: u32,
    /// Group-by columns equal to a value.
    pub equals: Vec<(String, Value)>,
    /// The page starts after this bucket and these group-by values (in the rollup's order).
    pub after: Option<(u32, Vec<Value>)>,
}

impl PageQuery {
    /// `query` of the game rounds.
    fn rounds(query: &RoundsQuery) -> PageQuery {
        let mut equals = Vec::new();
        if let Some(player_id) = &query.player_id {
            equals.push((
                "user_id".to_owned(),
                Value::Text(player_id.as_str().to_owned()),
            ));
        }
        if let Some(game_id) = query.game_id {
            equals.push(("game_id".to_owned(), Value::Number(game_id)));
        }
        PageQuery {
            from: query.from.map(|t| t.timestamp()),
            to: query.to.map(|t| t.timestamp()),
            granularity: query.granularity,
            order: query.order,
            page_size: query.page_size,
            equals,
            after: query.after.as_ref().map(|after| {
                let groups = vec![
                    Value::Text(after.player_id.clone()),
                    Value::Number(after.game_id),
                ];
                (after.start, groups)
            }),
        }
    }
}

/// The hours a page can hold buckets of (first seconds, inclusive) and those of them only
/// partly inside the asked range (read from raw rows: the rollup holds whole hours).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    first: u32,
    last: u32,
    partial: Vec<u32>,
}

impl Span {
    /// `first..=last` with those of `partial` inside it; `None` when empty.
    fn between(first: u32, last: u32, partial: &[u32]) -> Option<Span> {
        (first <= last).then(|| Span {
            first,
            last,
            partial: partial
                .iter()
                .copied()
                .filter(|h| (first..=last).contains(h))
                .collect(),
        })
    }

    /// The span of `query`, narrowed to what lies past its cursor; `None` when empty.
    fn of(query: &PageQuery) -> Option<Span> {
        let from = query.from.unwrap_or(0).max(0);
        let to = query.to.unwrap_or(i64::from(TIMESTAMP_MAX_SECONDS) + 1);
        if to <= from {
            return None;
        }
        let hour = |seconds: i64| hour_of(u32::try_from(seconds).unwrap_or(u32::MAX));
        let (mut first, mut last) = (hour(from), hour(to - 1));
        let mut partial = Vec::new();
        if from % i64::from(HOUR_SECONDS) != 0 {
            partial.push(first);
        }
        if to % i64::from(HOUR_SECONDS) != 0 && partial.last() != Some(&last) {
            partial.push(last);
        }
        if let Some((after, _)) = &query.after {
            match query.order {
                Order::Ascending => first = first.max(*after),
                Order::Descending => {
                    let bucket = bucket_seconds(query.granularity);
                    last = last.min(after.saturating_add(bucket - HOUR_SECONDS));
                }
            }
        }
        Span::between(first, last, &partial)
    }
}

/// SQL text and the values bound to its `?`s, in order: built together, so that they cannot
/// drift apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    sql: String,
    values: Vec<Value>,
}

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Number(u64),
    Signed(i64),
    Seconds(i64),
}

impl Statement {
    /// `self UNION ALL other`.
    fn union(mut self, other: Statement) -> Statement {
        self.values.extend(other.values);
        Statement {
            sql: format!("{} UNION ALL {}", self.sql, other.sql),
            values: self.values,
        }
    }
}

/// Conditions joined by `AND`, with their values in order.
#[derive(Default)]
struct Filter {
    conditions: Vec<String>,
    values: Vec<Value>,
}

impl Filter {
    fn condition(&mut self, sql: String, values: impl IntoIterator<Item = Value>) {
        self.conditions.push(sql);
        self.values.extend(values);
    }

    /// The conditions as SQL (`1`: none).
    fn sql(&self) -> String {
        match self.conditions.is_empty() {
            true => "1".to_owned(),
            false => self.conditions.join(" AND "),
        }
    }
}

/// The query's filters over the rollup's group-by columns.
fn group_filter(query: &PageQuery) -> Filter {
    let mut filter = Filter::default();
    for (column, value) in &query.equals {
        filter.condition(format!("{column} = ?"), [value.clone()]);
    }
    filter
}

/// Runs of raw hours a statement names at most: more would exceed ClickHouse's statement size
/// (256 KiB by default) when many scattered hours are dirty (a backfill).
const MAX_RAW_RUNS: usize = 64;

/// `hours` (sorted, distinct) with the smallest gaps between their runs filled in, until at
/// most `max_runs` runs remain. Reading an hour from raw rows is always exact (they are what
/// the rollup is computed from), so a superset only costs time; the rollup branch excludes
/// exactly the same hours.
fn coarsen(hours: &[u32], max_runs: usize) -> Vec<u32> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &hour in hours {
        match runs.last_mut() {
            Some((_, end)) if u64::from(*end) + u64::from(HOUR_SECONDS) == u64::from(hour) => {
                *end = hour
            }
            _ => runs.push((hour, hour)),
        }
    }
    if runs.len() > max_runs.max(1) {
        let mut gaps: Vec<(u32, usize)> = runs
            .windows(2)
            .enumerate()
            .map(|(i, pair)| (pair[1].0 - pair[0].1, i))
            .collect();
        // Keep the widest gaps, fill the others.
        gaps.sort_unstable_by(|a, b| b.cmp(a));
        let mut kept: Vec<usize> = gaps[..max_runs.max(1) - 1].iter().map(|g| g.1).collect();
        kept.sort_unstable();
        let mut merged = Vec::with_capacity(kept.len() + 1);
        let mut start = runs[0].0;
        for i in kept {
            merged.push((start, runs[i].1));
            start = runs[i + 1].0;
        }
        merged.push((start, runs[runs.len() - 1].1));
        runs = merged;
    }
    runs.into_iter()
        .flat_map(|(first, last)| (first..=last).step_by(HOUR_SECONDS as usize))
        .collect()
}

/// How many times wider each window is than the one before.
const WIDENING: u32 = 8;

/// The first window, in buckets: a day of hours or a week of days when every group is asked
/// for (dense: a page fills soon); the whole span for one player, one game or any group filter,
/// whose few buckets would otherwise take several widenings (measured: a player's year took
/// three statements, 49 ms against 12 ms for one).
fn first_window(query: &PageQuery) -> u32 {
    if !query.equals.is_empty() {
        return u32::MAX;
    }
    match query.granularity {
        Granularity::Hour => 24,
        Granularity::Day => 7,
    }
}

/// Seconds in a bucket of `granularity`.
fn bucket_seconds(granularity: Granularity) -> u32 {
    match granularity {
        Granularity::Hour => HOUR_SECONDS,
        Granularity::Day => 24 * HOUR_SECONDS,
    }
}

impl Span {
    /// The span within `first..=last` (hours), if any of it is.
    fn within(&self, first: u32, last: u32) -> Option<Span> {
        Span::between(self.first.max(first), self.last.min(last), &self.partial)
    }

    /// The first `buckets` buckets of the span in `order` (whole buckets of `granularity`, so
    /// a bucket is never split between windows), and whether that is the whole span.
    fn window(&self, order: Order, granularity: Granularity, buckets: u32) -> (Span, bool) {
        let size = u64::from(bucket_seconds(granularity));
        let length = u64::from(buckets) * size;
        let (first, last) = match order {
            Order::Ascending => {
                let start = u64::from(self.first) - u64::from(self.first) % size;
                let last = (start + length - u64::from(HOUR_SECONDS)).min(u64::from(self.last));
                (self.first, last as u32)
            }
            Order::Descending => {
                let start = u64::from(self.last) - u64::from(self.last) % size;
                let first = (start + size)
                    .saturating_sub(length)
                    .max(u64::from(self.first));
                (first as u32, self.last)
            }
        };
        let whole = (first, last) == (self.first, self.last);
        let window = Span::between(first, last, &self.partial).expect("a window is not empty");
        (window, whole)
    }
}

/// Attempts at a consistent read; the last reads every hour of its window raw.
const CONSISTENT_ATTEMPTS: usize = 4;

/// Reads one page of the game rounds (see [`fetch_page`]).
pub async fn fetch(
    source: &Source,
    query: &RoundsQuery,
) -> Result<(Vec<Bucket>, bool), FetchError> {
    let page = PageQuery::rounds(query);
    let (rows, has_more) = fetch_page::<BucketRow>(source, &source.rounds, &page).await?;
    Ok((rows.into_iter().map(Bucket::from).collect(), has_more))
}

/// Reads one page of `shape` (see the module's documentation): at most `page_size` buckets,
/// each a row `R` of `start` and the shape's columns, and whether more exist. Redis is asked
/// for the dirty hours before and after the read: if an hour the page took from the rollup
/// changed meanwhile (a batch began on it, or hours were cleared), the page is read again, and
/// the last attempt reads its hours only from raw rows — exact without Redis, only slower.
pub async fn fetch_page<R>(
    source: &Source,
    shape: &Shape,
    query: &PageQuery,
) -> Result<(Vec<R>, bool), FetchError>
where
    R: clickhouse::RowOwned + clickhouse::RowRead,
{
    let Some(span) = Span::of(query) else {
        return Ok((Vec::new(), false));
    };
    for attempt in 1..=CONSISTENT_ATTEMPTS {
        let before = snapshot(source, shape, &span, query.granularity).await?;
        let all_raw = attempt == CONSISTENT_ATTEMPTS;
        let read = read_page(source, shape, query, &span, &before, all_raw).await?;
        let Some(page) = read else {
            return Ok((Vec::new(), false));
        };
        if all_raw {
            return Ok(page.answer);
        }
        let after = snapshot(source, shape, &span, query.granularity).await?;
        if before.still_hold(&after, &page) {
            return Ok(page.answer);
        }
        metrics::counter!(crate::metric::READS_REPEATED_TOTAL).increment(1);
    }
    unreachable!("the last attempt returns")
}

/// The dirty hours of a span and, for a page of days, its dirty days, at one moment each.
struct Snapshots {
    hours: Snapshot,
    days: Option<Snapshot>,
}

impl Snapshots {
    /// The hours of `page` taken from the hourly rollup stayed clean from `self` to `later`,
    /// and so did the days it took from the daily one (see [`Snapshot::still_holds`]).
    fn still_hold<R>(&self, later: &Snapshots, page: &Page<R>) -> bool {
        let Page { window, .. } = page;
        let hours = self
            .hours
            .still_holds(&later.hours, window.first, window.last, &page.raw);
        let days = match (&self.days, &later.days) {
            _ if page.daily.is_empty() => true,
            (Some(before), Some(after)) => before.still_clean(after, &page.daily),
            _ => false,
        };
        hours && days
    }

    fn dirty_days(&self) -> &[u32] {
        self.days.as_ref().map_or(&[], |days| &days.hours)
    }
}

/// The dirty hours of `span` now (and its dirty days, for a page of days), on a pooled
/// connection held only for that: a slow ClickHouse must not keep Redis connections from the
/// admissions of other requests.
async fn snapshot(
    source: &Source,
    shape: &Shape,
    span: &Span,
    granularity: Granularity,
) -> Result<Snapshots, FetchError> {
    let mut redis = source.redis.get().await?;
    let hours = shape.hours.snapshot(&mut redis, span.first, span.last);
    let hours = hours.await?;
    let days = match (granularity, &shape.days) {
        (Granularity::Day, Some(days)) => {
            let (first, last) = (Period::Day.start(span.first), Period::Day.start(span.last));
            Some(days.snapshot(&mut redis, first, last).await?)
        }
        _ => None,
    };
    Ok(Snapshots { hours, days })
}

/// A page read, with the hours it covers, those it read raw and the days it took from the
/// daily rollup.
struct Page<R> {
    answer: (Vec<R>, bool),
    window: Span,
    raw: Vec<u32>,
    daily: Vec<u32>,
}

/// The days of `window` a page of days may take from the daily rollup: whole days inside
/// it, not dirty (`dirty_days`, sorted), with no hour read raw (`raw`, sorted) — a day's
/// hours are then all processed and its rollup sums them. Those without a published version
/// (before the processor summed them once) are read from their hours.
fn whole_clean_days(window: &Span, raw: &[u32], dirty_days: &[u32]) -> Vec<u32> {
    let (day, last) = (u64::from(DAY_SECONDS), u64::from(window.last));
    let first = u64::from(window.first).div_ceil(day) * day;
    (first..)
        .step_by(DAY_SECONDS as usize)
        .take_while(|start| start + day - u64::from(HOUR_SECONDS) <= last)
        .map(|start| start as u32)
        .filter(|start| dirty_days.binary_search(start).is_err())
        .filter(|start| {
            let from = raw.partition_point(|h| h < start);
            raw.get(from)
                .is_none_or(|h| u64::from(*h) >= u64::from(*start) + day)
        })
        .collect()
}

/// Those of `days` (not empty) `daily` has published, sorted.
async fn published_days(
    source: &Source,
    daily: &Rollup,
    days: &[u32],
) -> Result<Vec<u32>, FetchError> {
    let sql = daily.published_among(days);
    let mut days: Vec<u32> = (source.reads)
        .run(async |client| client.query(&sql).fetch_all().await)
        .await?;
    days.sort_unstable();
    Ok(days)
}

/// Reads one page with `dirty`'s hours (and days) as the unprocessed ones, or every hour
/// raw; `None` when no hour of the span can hold rows.
async fn read_page<R>(
    source: &Source,
    shape: &Shape,
    query: &PageQuery,
    span: &Span,
    dirty: &Snapshots,
    all_raw: bool,
) -> Result<Option<Page<R>>, FetchError>
where
    R: clickhouse::RowOwned + clickhouse::RowRead,
{
    let Some(span) = data_span(source, shape, query, span, &dirty.hours.hours).await? else {
        return Ok(None);
    };
    let mut buckets = first_window(query);
    loop {
        let (window, whole) = span.window(query.order, query.granularity, buckets);
        let raw = match all_raw {
            true => (window.first..=window.last)
                .step_by(HOUR_SECONDS as usize)
                .collect(),
            false => raw_hours(&window, &dirty.hours.hours),
        };
        let mut daily = Vec::new();
        if let (Granularity::Day, Some(rollup), false) = (query.granularity, &shape.daily, all_raw)
        {
            let days = whole_clean_days(&window, &raw, dirty.dirty_days());
            if !days.is_empty() {
                daily = published_days(source, rollup, &days).await?;
            }
        }
        let statement = page_statement(shape, query, &window, &raw, &daily);
        let mut rows = (source.reads)
            .run(async |client| read::<R>(client, &statement).await)
            .await?;
        let has_more = rows.len() > query.page_size as usize;
        if has_more || whole {
            rows.truncate(query.page_size as usize);
            return Ok(Some(Page {
                answer: (rows, has_more),
                window,
                raw,
                daily,
            }));
        }
        buckets = buckets.saturating_mul(WIDENING);
    }
}

/// The hours of `window` read from raw rows: the dirty ones (`dirty`, sorted) and those only
/// partly inside the range, coarsened to a few runs. Sorted.
fn raw_hours(window: &Span, dirty: &[u32]) -> Vec<u32> {
    let mut raw: Vec<u32> = dirty
        .iter()
        .copied()
        .filter(|h| (window.first..=window.last).contains(h))
        .chain(window.partial.iter().copied())
        .collect();
    raw.sort_unstable();
    raw.dedup();
    coarsen(&raw, MAX_RAW_RUNS)
}

/// `span`, where an end is open, narrowed to the buckets that can hold rows: every hour with
/// rows is published or dirty. Whole buckets of the query's granularity, so a day at an end
/// can still be taken from the daily rollup. `None` when there are none.
async fn data_span(
    source: &Source,
    shape: &Shape,
    query: &PageQuery,
    span: &Span,
    dirty: &[u32],
) -> Result<Option<Span>, FetchError> {
    if query.from.is_some() && query.to.is_some() {
        return Ok(Some(span.clone()));
    }
    let bounds = shape.hourly.published_bounds();
    let (first, last, hours): (u32, u32, u64) = (source.reads)
        .run(async |client| client.query(&bounds).fetch_one().await)
        .await?;
    let published = (hours > 0).then_some((first, last));
    let dirty = dirty.first().zip(dirty.last()).map(|(f, l)| (*f, *l));
    let bounds = match (published, dirty) {
        (Some((f1, l1)), Some((f2, l2))) => Some((f1.min(f2), l1.max(l2))),
        (one, other) => one.or(other),
    };
    let size = bucket_seconds(query.granularity);
    let whole = |(first, last): (u32, u32)| {
        let end = u64::from(last - last % size) + u64::from(size - HOUR_SECONDS);
        (first - first % size, end.min(u64::from(u32::MAX)) as u32)
    };
    Ok(bounds
        .map(whole)
        .and_then(|(first, last)| span.within(first, last)))
}

/// The rows of `window` the rollups hold: the `daily` days from the daily rollup, every other
/// hour but `raw_hours` from the hourly one.
fn rollup_rows(
    shape: &Shape,
    query: &PageQuery,
    window: &Span,
    raw_hours: &[u32],
    daily: &[u32],
) -> Statement {
    let rollup = &shape.hourly;
    let published = group_filter(query);
    let filter = published.sql();
    let Some(daily_rollup) = shape.daily.as_ref().filter(|_| !daily.is_empty()) else {
        return Statement {
            sql: rollup.published_rows(window.first, window.last, raw_hours, &filter),
            values: published.values,
        };
    };
    // The hours left between the days and the raw hours, named one by one (as ranges):
    // a range with the days cut out would still scan their hours.
    let day = |hour: &u32| Period::Day.start(*hour);
    let hours: Vec<u32> = (window.first..=window.last)
        .step_by(HOUR_SECONDS as usize)
        .filter(|h| raw_hours.binary_search(h).is_err())
        .filter(|h| daily.binary_search(&day(h)).is_err())
        .collect();
    let days = Statement {
        sql: daily_rollup.published_rows_of(daily, &filter),
        values: published.values.clone(),
    };
    if hours.is_empty() {
        return days;
    }
    let hours = Statement {
        sql: rollup.published_rows_of(&hours, &filter),
        values: published.values,
    };
    hours.union(days)
}

/// The current raw rows of `raw_hours` (not empty) inside the asked range.
fn raw_rows(shape: &Shape, query: &PageQuery, raw_hours: &[u32]) -> Statement {
    let mut raw = group_filter(query);
    let time = shape.hourly.time_column();
    // Instants are bound as seconds: `toDateTime` of a number is exact on every ClickHouse
    // version, where text beyond 2105 is read as garbage by 18.16.
    if let Some(from) = query.from {
        raw.condition(format!("{time} >= toDateTime(?)"), [Value::Seconds(from)]);
    }
    if let Some(to) = query.to {
        raw.condition(format!("{time} < toDateTime(?)"), [Value::Seconds(to)]);
    }
    let sql = shape.hourly.current_inputs(raw_hours, &raw.sql());
    // The filter appears twice: on the rows and on the keys looked up.
    let mut values = raw.values.clone();
    values.extend(raw.values);
    Statement { sql, values }
}

/// What [`read`] runs: the first `page_size + 1` buckets of `window` past the cursor, `daily`
/// (days) from the daily rollup, `raw_hours` from their current raw rows, every other hour
/// from the hourly rollup, summed in one statement.
fn page_statement(
    shape: &Shape,
    query: &PageQuery,
    window: &Span,
    raw_hours: &[u32],
    daily: &[u32],
) -> Statement {
    let mut rows = rollup_rows(shape, query, window, raw_hours, daily);
    if !raw_hours.is_empty() {
        rows = rows.union(raw_rows(shape, query, raw_hours));
    }
    let bucket = match query.granularity {
        Granularity::Hour => "toUInt32(toStartOfHour(at))",
        Granularity::Day => "toUInt32(toStartOfDay(at))",
    };
    let groups = shape.hourly.group_by;
    let sort_key: Vec<&str> = std::iter::once("start")
        .chain(groups.iter().copied())
        .collect();
    let (keyset, order_by) = match query.order {
        Order::Ascending => (">", sort_key.join(", ")),
        Order::Descending => ("<", sort_key.join(" DESC, ") + " DESC"),
    };
    let mut values = rows.values;
    let keyset = match &query.after {
        Some((start, after)) => {
            values.push(Value::Number(u64::from(*start)));
            values.extend(after.iter().cloned());
            let key: Vec<&str> = std::iter::once(bucket)
                .chain(groups.iter().copied())
                .collect();
            let marks = vec!["?"; key.len()].join(", ");
            format!("WHERE ({}) {keyset} ({marks})", key.join(", "))
        }
        None => String::new(),
    };
    values.push(Value::Number(u64::from(query.page_size) + 1));
    let sql = format!(
        "SELECT {bucket} AS start, {columns} FROM ({rows}) {keyset} \
         GROUP BY {group_by} ORDER BY {order_by} LIMIT ?",
        columns = shape.columns,
        rows = rows.sql,
        group_by = sort_key.join(", "),
    );
    Statement { sql, values }
}

/// Runs a page's statement (see [`page_statement`]).
async fn read<R>(
    clickhouse: &Client,
    statement: &Statement,
) -> Result<Vec<R>, clickhouse::error::Error>
where
    R: clickhouse::RowOwned + clickhouse::RowRead,
{
    let mut query = clickhouse.query(&statement.sql);
    for value in &statement.values {
        query = match value {
            Value::Text(text) => query.bind(text.as_str()),
            Value::Number(number) => query.bind(*number),
            Value::Signed(number) => query.bind(*number),
            Value::Seconds(seconds) => query.bind(*seconds),
        };
    }
    query.fetch_all::<R>().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first: u32, last: u32) -> Span {
        Span {
            first,
            last,
            partial: vec![first, last],
        }
    }

    const DAY: u32 = 86_400;

    #[test]
    fn windows_start_at_the_pages_first_bucket_and_end_on_a_bucket_boundary() {
        // From 10:00 on day 2 to 05:00 on day 9.
        let whole = span(2 * DAY + 10 * HOUR_SECONDS, 9 * DAY + 5 * HOUR_SECONDS);
        let (window, done) = whole.window(Order::Ascending, Granularity::Hour, 24);
        assert_eq!(
            (window.first, window.last),
            (whole.first, whole.first + 23 * HOUR_SECONDS)
        );
        assert_eq!((window.partial, done), (vec![whole.first], false));
        let (window, done) = whole.window(Order::Ascending, Granularity::Day, 2);
        assert_eq!(
            window.last,
            4 * DAY - HOUR_SECONDS,
            "day 2 and day 3, whole"
        );
        assert!(!done);
        let (window, done) = whole.window(Order::Descending, Granularity::Day, 2);
        assert_eq!((window.first, window.last), (8 * DAY, whole.last));
        assert_eq!((window.partial, done), (vec![whole.last], false));
        let (window, done) = whole.window(Order::Descending, Granularity::Hour, 1_000);
        assert_eq!((window, done), (whole.clone(), true));
        assert!(whole.window(Order::Ascending, Granularity::Day, 8).1);
    }

    #[test]
    fn scattered_raw_hours_are_joined_across_the_smallest_gaps() {
        let h = |n: u32| n * HOUR_SECONDS;
        let hours = [h(1), h(2), h(4), h(10), h(11), h(30)];
        assert_eq!(coarsen(&hours, 10), hours, "few runs stay as they are");
        assert_eq!(
            coarsen(&hours, 2),
            [
                h(1),
                h(2),
                h(3),
                h(4),
                h(5),
                h(6),
                h(7),
                h(8),
                h(9),
                h(10),
                h(11),
                h(30)
            ]
        );
        assert_eq!(coarsen(&hours, 1), (1..=30).map(h).collect::<Vec<_>>());
        let scattered: Vec<u32> = (0..10_000).map(|n| h(n * 2)).collect();
        let coarse = coarsen(&scattered, MAX_RAW_RUNS);
        assert!(scattered.iter().all(|h| coarse.binary_search(h).is_ok()));
        let runs = coarse
            .windows(2)
            .filter(|w| w[1] - w[0] > HOUR_SECONDS)
            .count()
            + 1;
        assert!(runs <= MAX_RAW_RUNS, "{runs}");
    }

    #[test]
    fn windows_near_the_ends_of_time_do_not_overflow() {
        let last = hour_of(TIMESTAMP_MAX_SECONDS);
        let whole = span(0, last);
        assert_eq!(
            whole
                .window(Order::Ascending, Granularity::Day, u32::MAX)
                .0
                .last,
            last
        );
        assert_eq!(
            whole
                .window(Order::Descending, Granularity::Day, u32::MAX)
                .0
                .first,
            0
        );
        assert_eq!(
            whole
                .window(Order::Descending, Granularity::Hour, 1)
                .0
                .first,
            last
        );
    }

    #[test]
    fn days_are_taken_from_the_daily_rollup_only_whole_clean_and_with_no_hour_read_raw() {
        let h = |n: u32| n * HOUR_SECONDS;
        let window = span(DAY + h(10), 5 * DAY + h(5));
        assert_eq!(
            whole_clean_days(&window, &[], &[]),
            [2 * DAY, 3 * DAY, 4 * DAY]
        );
        let raw = [DAY + h(10), 2 * DAY + h(23)];
        assert_eq!(whole_clean_days(&window, &raw, &[3 * DAY]), [4 * DAY]);
        assert!(whole_clean_days(&span(DAY, DAY + h(22)), &[], &[]).is_empty());
        let last = hour_of(TIMESTAMP_MAX_SECONDS);
        let end = whole_clean_days(&span(0, last), &[], &[]);
        assert_eq!(end.last(), Some(&(last - last % DAY)), "2105-12-31, whole");
    }

    fn query(granularity: Granularity, order: Order) -> RoundsQuery {
        RoundsQuery {
            player_id: None,
            game_id: None,
            from: None,
            to: None,
            granularity,
            order,
            page_size: 10,
            after: None,
        }
    }

    #[test]
    fn a_page_statement_binds_its_values_in_the_order_of_its_placeholders() {
        let h = |n: u32| DAY + n * HOUR_SECONDS;
        let window = span(h(0), h(47));
        let shape = Shape::game_rounds("db");
        let plain = page_statement(
            &shape,
            &PageQuery::rounds(&query(Granularity::Hour, Order::Ascending)),
            &window,
            &[],
            &[],
        );
        assert_eq!(plain.values, [Value::Number(11)], "only the page size + 1");
        assert!(
            plain.sql.ends_with(
                "GROUP BY start, user_id, game_id ORDER BY start, user_id, game_id LIMIT ?"
            ),
            "{}",
            plain.sql
        );

        let player = "9ece8c4020f8aed10676cd1c56a41889";
        let mut filtered = query(Granularity::Day, Order::Descending);
        filtered.player_id = Some(sluice_schema::PlayerId::parse(player).unwrap());
        filtered.game_id = Some(7);
        filtered.from = DateTime::from_timestamp(i64::from(h(1)) + 30, 0);
        filtered.to = DateTime::from_timestamp(i64::from(h(40)), 0);
        filtered.after = Some(Position {
            start: 2 * DAY,
            player_id: player.to_owned(),
            game_id: 7,
        });
        let filtered = PageQuery::rounds(&filtered);
        let statement = page_statement(&shape, &filtered, &window, &[h(1), h(5)], &[2 * DAY]);
        let text = || Value::Text(player.to_owned());
        let (from, to) = (
            Value::Seconds(i64::from(h(1)) + 30),
            Value::Seconds(i64::from(h(40))),
        );
        assert_eq!(
            statement.values,
            [
                // The hours from the hourly rollup, then the day from the daily one.
                text(),
                Value::Number(7),
                text(),
                Value::Number(7),
                // The raw rows, their filter twice.
                text(),
                Value::Number(7),
                from.clone(),
                to.clone(),
                text(),
                Value::Number(7),
                from,
                to,
                // The cursor's position, then the page size + 1.
                Value::Number(u64::from(2 * DAY)),
                text(),
                Value::Number(7),
                Value::Number(11),
            ]
        );
        assert_eq!(statement.sql.matches('?').count(), statement.values.len());
        assert!(statement.sql.contains(
            "WHERE (toUInt32(toStartOfDay(at)), user_id, game_id) < (?, ?, ?) GROUP BY start"
        ));
        assert_eq!(statement.sql.matches(" UNION ALL ").count(), 2);
    }

    #[test]
    fn buckets_carry_exact_sums_and_ggr() {
        let bucket = Bucket::from(BucketRow {
            start: 3600,
            user_id: "p".into(),
            game_id: 1,
            real_amount_bet: Some(25_000),
            bonus_amount_bet: None,
            real_amount_win: Some(1),
            bonus_amount_win: Some(10_000),
            rounds: 3,
        });
        assert_eq!(bucket.real_amount_bet, "2.5");
        assert_eq!(bucket.bonus_amount_bet, "0");
        assert_eq!(bucket.ggr, "1.4999");
        assert_eq!(bucket.start.to_rfc3339(), "1970-01-01T01:00:00+00:00");
    }
}
