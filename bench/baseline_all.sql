-- The hand-written DuckDB baseline of bench/incremental_bench.py's "all sources" step: the work of the
-- engine's full run for every source of includes/contracts/ and every gold table of definitions/gold/,
-- written directly for DuckDB, with no compile, no translation and no run bookkeeping (no intake
-- ledger, no run record, no assertions).
-- Per source: read every landing line, parse it once, type it, check every rule of its contract (the
-- engine's record ids and failed_rules, in its order), then quarantine, duplicates (each version with
-- its successor, as the engine's full run records them), and silver: the latest valid version per key,
-- PII hashed with the salt the engine's run made. Then the eight gold tables, as definitions/gold/*.sqlx.
-- Bronze is the landing files only: `lakehouse generate` publishes nothing to Pub/Sub by default
-- (--pubsub-share 0.0), so the bench's <source>_raw tables are empty.
-- Filled in by the bench: {landing_dir} (the landing bucket's local directory), {landing_uri} (its
-- gs:// URI, the origin the engine records), {csv_options} (the engine's read of the landing table,
-- definitions/sources/bronze.js) and {pii_salt}.

-- ad_clicks -------------------------------------------------------------------------------------------

create or replace table baseline.ad_clicks_staged as
with landing as (
  select
    'landing' as source_kind,
    '{landing_uri}' || substr(filename, length('{landing_dir}') + 1) as origin,
    ingest_date,
    cast(ingest_date as timestamptz) + to_hours(try_cast(hour as bigint)) as ingested_at,
    coalesce(line, '') as raw_record
  from read_csv('{landing_dir}/source=ad_clicks/**/*', {csv_options})
),
numbered as (
  -- origin fixes ingest_date and source_kind: the occurrence of a line within its file
  select *, row_number() over (partition by origin, raw_record) as occurrence
  from landing
),
parsed as (
  -- one parse for every path: NULL when the line is not JSON
  select
    sha256(source_kind || '|' || origin || '|' || raw_record || '|' || occurrence) as record_id,
    source_kind, origin, ingested_at, ingest_date, raw_record,
    try(json_extract(raw_record, ['$.event_id', '$.source', '$.click_id', '$.campaign_id', '$.session_id', '$.customer_id', '$.ad_network', '$.cost_usd', '$.event_ts'])) as tokens
  from numbered
),
typed as (
  select
    *,
    tokens is not null as is_json,
    json_value(tokens[1], '$') ->> '$' as event_id,
    if(starts_with(tokens[3], '"'), tokens[3] ->> '$', null) as click_id,
    if(starts_with(tokens[4], '"'), tokens[4] ->> '$', null) as campaign_id,
    if(starts_with(tokens[5], '"'), tokens[5] ->> '$', null) as session_id,
    if(starts_with(tokens[6], '"'), tokens[6] ->> '$', null) as customer_id,
    if(starts_with(tokens[7], '"'), tokens[7] ->> '$', null) as ad_network,
    if(
      regexp_matches(tokens[8], '^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$'),
      try_cast(tokens[8] ->> '$' as decimal(38, 9)),
      null
    ) as cost_usd,
    if(starts_with(tokens[9], '"'), try_cast(tokens[9] ->> '$' as timestamptz), null) as event_ts,
    if(tokens is null, [], list_sort(list_distinct(list_filter(json_keys(raw_record), lambda k: k not in (
      'source', 'event_id', 'click_id', 'campaign_id', 'session_id', 'customer_id', 'ad_network', 'cost_usd', 'event_ts'))))) as extra_fields
  from parsed
),
checked as (
  select
    *,
    if(len(extra_fields) = 0, null, json('{' || array_to_string(list_transform(extra_fields, lambda k:
      to_json(k)::varchar || ':' || (raw_record -> ('/' || replace(replace(k, '~', '~0'), '/', '~1')))::varchar
    ), ',') || '}')) as extra,
    list_filter([
      if(not is_json, 'record_not_json', null),
      if(strpos(raw_record, chr(65533)) > 0, 'record_not_utf8', null),
      if(strlen(raw_record) > 65536, 'record_oversized', null),
      if(is_json and coalesce(tokens[2] ->> '$' != 'ad_clicks', true), 'record_source_mismatch', null),
      if(is_json and coalesce(tokens[3], 'null') = 'null', 'click_id_required', null),
      if(is_json and coalesce(tokens[3], 'null') != 'null' and click_id is null, 'click_id_type', null),
      if(not regexp_matches(click_id, '^CLK-[0-9A-F]{12}$'), 'click_id_pattern', null),
      if(is_json and coalesce(tokens[4], 'null') = 'null', 'campaign_id_required', null),
      if(is_json and coalesce(tokens[4], 'null') != 'null' and campaign_id is null, 'campaign_id_type', null),
      if(not regexp_matches(campaign_id, '^CMP-[0-9]{3}$'), 'campaign_id_pattern', null),
      if(is_json and coalesce(tokens[5], 'null') = 'null', 'session_id_required', null),
      if(is_json and coalesce(tokens[5], 'null') != 'null' and session_id is null, 'session_id_type', null),
      if(not regexp_matches(session_id, '^SESS-[0-9]{6}$'), 'session_id_pattern', null),
      if(is_json and coalesce(tokens[6], 'null') = 'null', 'customer_id_required', null),
      if(is_json and coalesce(tokens[6], 'null') != 'null' and customer_id is null, 'customer_id_type', null),
      if(not regexp_matches(customer_id, '^CUST-[0-9]{5}$'), 'customer_id_pattern', null),
      if(is_json and coalesce(tokens[7], 'null') = 'null', 'ad_network_required', null),
      if(is_json and coalesce(tokens[7], 'null') != 'null' and ad_network is null, 'ad_network_type', null),
      if(ad_network not in ('google_ads', 'meta_ads', 'microsoft_ads', 'tiktok_ads'), 'ad_network_accepted_values', null),
      if(is_json and coalesce(tokens[8], 'null') = 'null', 'cost_usd_required', null),
      if(is_json and coalesce(tokens[8], 'null') != 'null' and cost_usd is null, 'cost_usd_type', null),
      if(cost_usd <= 0, 'cost_usd_min_exclusive', null),
      if(is_json and coalesce(tokens[9], 'null') = 'null', 'event_ts_required', null),
      if(is_json and coalesce(tokens[9], 'null') != 'null' and event_ts is null, 'event_ts_type', null)
    ], lambda rule: rule is not null) as failed_rules
  from typed
)
select
  record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record,
  click_id, campaign_id, session_id, customer_id, ad_network, cost_usd, event_ts,
  extra_fields, extra, failed_rules
from checked;

create or replace table baseline.ad_clicks_quarantine as
select record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record, failed_rules
from baseline.ad_clicks_staged
where len(failed_rules) > 0;

create or replace table baseline.ad_clicks_duplicates as
with ranked as (
  -- each version's successor: the next newer version of its key
  select
    click_id, customer_id, event_id, event_ts, record_id, source_kind, ingested_at, ingest_date,
    lag(record_id) over latest_first as duplicate_of,
    lag(event_id) over latest_first as successor_event_id
  from baseline.ad_clicks_staged
  where len(failed_rules) = 0
  window latest_first as (partition by click_id order by event_ts desc, ingested_at desc, record_id desc)
)
select
  * exclude (successor_event_id),
  if(coalesce(event_id = successor_event_id, false), 'redelivery', 'older_version') as duplicate_kind
from ranked
where duplicate_of is not null;

create or replace table baseline.ad_clicks as
select
  click_id,
  campaign_id,
  session_id,
  customer_id,
  ad_network,
  cost_usd,
  event_ts,
  extra,
  cast(event_ts as date) as event_date,
  event_id,
  record_id,
  source_kind,
  ingested_at,
  ingest_date
from baseline.ad_clicks_staged
where len(failed_rules) = 0
qualify row_number() over (partition by click_id order by event_ts desc, ingested_at desc, record_id desc) = 1;


-- inventory -------------------------------------------------------------------------------------------

create or replace table baseline.inventory_staged as
with landing as (
  select
    'landing' as source_kind,
    '{landing_uri}' || substr(filename, length('{landing_dir}') + 1) as origin,
    ingest_date,
    cast(ingest_date as timestamptz) + to_hours(try_cast(hour as bigint)) as ingested_at,
    coalesce(line, '') as raw_record
  from read_csv('{landing_dir}/source=inventory/**/*', {csv_options})
),
numbered as (
  -- origin fixes ingest_date and source_kind: the occurrence of a line within its file
  select *, row_number() over (partition by origin, raw_record) as occurrence
  from landing
),
parsed as (
  -- one parse for every path: NULL when the line is not JSON
  select
    sha256(source_kind || '|' || origin || '|' || raw_record || '|' || occurrence) as record_id,
    source_kind, origin, ingested_at, ingest_date, raw_record,
    try(json_extract(raw_record, ['$.event_id', '$.source', '$.warehouse_id', '$.product_id', '$.quantity_on_hand', '$.event_ts'])) as tokens
  from numbered
),
typed as (
  select
    *,
    tokens is not null as is_json,
    json_value(tokens[1], '$') ->> '$' as event_id,
    if(starts_with(tokens[3], '"'), tokens[3] ->> '$', null) as warehouse_id,
    if(starts_with(tokens[4], '"'), tokens[4] ->> '$', null) as product_id,
    if(regexp_matches(tokens[5], '^-?[0-9]+$'), try_cast(tokens[5] ->> '$' as bigint), null) as quantity_on_hand,
    if(starts_with(tokens[6], '"'), try_cast(tokens[6] ->> '$' as timestamptz), null) as event_ts,
    if(tokens is null, [], list_sort(list_distinct(list_filter(json_keys(raw_record), lambda k: k not in (
      'source', 'event_id', 'warehouse_id', 'product_id', 'quantity_on_hand', 'event_ts'))))) as extra_fields
  from parsed
),
checked as (
  select
    *,
    if(len(extra_fields) = 0, null, json('{' || array_to_string(list_transform(extra_fields, lambda k:
      to_json(k)::varchar || ':' || (raw_record -> ('/' || replace(replace(k, '~', '~0'), '/', '~1')))::varchar
    ), ',') || '}')) as extra,
    list_filter([
      if(not is_json, 'record_not_json', null),
      if(strpos(raw_record, chr(65533)) > 0, 'record_not_utf8', null),
      if(strlen(raw_record) > 65536, 'record_oversized', null),
      if(is_json and coalesce(tokens[2] ->> '$' != 'inventory', true), 'record_source_mismatch', null),
      if(is_json and coalesce(tokens[3], 'null') = 'null', 'warehouse_id_required', null),
      if(is_json and coalesce(tokens[3], 'null') != 'null' and warehouse_id is null, 'warehouse_id_type', null),
      if(not regexp_matches(warehouse_id, '^WH-[0-9]{2}$'), 'warehouse_id_pattern', null),
      if(is_json and coalesce(tokens[4], 'null') = 'null', 'product_id_required', null),
      if(is_json and coalesce(tokens[4], 'null') != 'null' and product_id is null, 'product_id_type', null),
      if(not regexp_matches(product_id, '^PROD-[0-9]{4}$'), 'product_id_pattern', null),
      if(is_json and coalesce(tokens[5], 'null') = 'null', 'quantity_on_hand_required', null),
      if(is_json and coalesce(tokens[5], 'null') != 'null' and quantity_on_hand is null, 'quantity_on_hand_type', null),
      if(quantity_on_hand < 0, 'quantity_on_hand_min', null),
      if(is_json and coalesce(tokens[6], 'null') = 'null', 'event_ts_required', null),
      if(is_json and coalesce(tokens[6], 'null') != 'null' and event_ts is null, 'event_ts_type', null)
    ], lambda rule: rule is not null) as failed_rules
  from typed
)
select
  record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record,
  warehouse_id, product_id, quantity_on_hand, event_ts,
  extra_fields, extra, failed_rules
from checked;

create or replace table baseline.inventory_quarantine as
select record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record, failed_rules
from baseline.inventory_staged
where len(failed_rules) > 0;

create or replace table baseline.inventory_duplicates as
with ranked as (
  -- each version's successor: the next newer version of its key
  select
    warehouse_id, product_id, event_id, event_ts, record_id, source_kind, ingested_at, ingest_date,
    lag(record_id) over latest_first as duplicate_of,
    lag(event_id) over latest_first as successor_event_id
  from baseline.inventory_staged
  where len(failed_rules) = 0
  window latest_first as (partition by warehouse_id, product_id order by event_ts desc, ingested_at desc, record_id desc)
)
select
  * exclude (successor_event_id),
  if(coalesce(event_id = successor_event_id, false), 'redelivery', 'older_version') as duplicate_kind
from ranked
where duplicate_of is not null;

create or replace table baseline.inventory as
select
  warehouse_id,
  product_id,
  quantity_on_hand,
  event_ts,
  extra,
  cast(event_ts as date) as event_date,
  event_id,
  record_id,
  source_kind,
  ingested_at,
  ingest_date
from baseline.inventory_staged
where len(failed_rules) = 0
qualify row_number() over (partition by warehouse_id, product_id order by event_ts desc, ingested_at desc, record_id desc) = 1;


-- orders ----------------------------------------------------------------------------------------------

create or replace table baseline.orders_staged as
with landing as (
  select
    'landing' as source_kind,
    '{landing_uri}' || substr(filename, length('{landing_dir}') + 1) as origin,
    ingest_date,
    cast(ingest_date as timestamptz) + to_hours(try_cast(hour as bigint)) as ingested_at,
    coalesce(line, '') as raw_record
  from read_csv('{landing_dir}/source=orders/**/*', {csv_options})
),
numbered as (
  -- origin fixes ingest_date and source_kind: the occurrence of a line within its file
  select *, row_number() over (partition by origin, raw_record) as occurrence
  from landing
),
parsed as (
  -- one parse for every path: NULL when the line is not JSON
  select
    sha256(source_kind || '|' || origin || '|' || raw_record || '|' || occurrence) as record_id,
    source_kind, origin, ingested_at, ingest_date, raw_record,
    try(json_extract(raw_record, ['$.event_id', '$.source', '$.order_id', '$.customer_id', '$.customer_email', '$.customer_name', '$.shipping_address', '$.product_id', '$.quantity', '$.price', '$.currency', '$.status', '$.event_ts'])) as tokens
  from numbered
),
typed as (
  select
    *,
    tokens is not null as is_json,
    json_value(tokens[1], '$') ->> '$' as event_id,
    if(starts_with(tokens[3], '"'), tokens[3] ->> '$', null) as order_id,
    if(starts_with(tokens[4], '"'), tokens[4] ->> '$', null) as customer_id,
    if(starts_with(tokens[5], '"'), tokens[5] ->> '$', null) as customer_email,
    if(starts_with(tokens[6], '"'), tokens[6] ->> '$', null) as customer_name,
    if(starts_with(tokens[7], '"'), tokens[7] ->> '$', null) as shipping_address,
    if(starts_with(tokens[8], '"'), tokens[8] ->> '$', null) as product_id,
    if(regexp_matches(tokens[9], '^-?[0-9]+$'), try_cast(tokens[9] ->> '$' as bigint), null) as quantity,
    if(
      regexp_matches(tokens[10], '^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$'),
      try_cast(tokens[10] ->> '$' as decimal(38, 9)),
      null
    ) as price,
    if(starts_with(tokens[11], '"'), tokens[11] ->> '$', null) as currency,
    if(starts_with(tokens[12], '"'), tokens[12] ->> '$', null) as status,
    if(starts_with(tokens[13], '"'), try_cast(tokens[13] ->> '$' as timestamptz), null) as event_ts,
    if(tokens is null, [], list_sort(list_distinct(list_filter(json_keys(raw_record), lambda k: k not in (
      'source', 'event_id', 'order_id', 'customer_id', 'customer_email', 'customer_name', 'shipping_address', 'product_id', 'quantity', 'price', 'currency', 'status', 'event_ts'))))) as extra_fields
  from parsed
),
checked as (
  select
    *,
    if(len(extra_fields) = 0, null, json('{' || array_to_string(list_transform(extra_fields, lambda k:
      to_json(k)::varchar || ':' || (raw_record -> ('/' || replace(replace(k, '~', '~0'), '/', '~1')))::varchar
    ), ',') || '}')) as extra,
    list_filter([
      if(not is_json, 'record_not_json', null),
      if(strpos(raw_record, chr(65533)) > 0, 'record_not_utf8', null),
      if(strlen(raw_record) > 65536, 'record_oversized', null),
      if(is_json and coalesce(tokens[2] ->> '$' != 'orders', true), 'record_source_mismatch', null),
      if(is_json and coalesce(tokens[3], 'null') = 'null', 'order_id_required', null),
      if(is_json and coalesce(tokens[3], 'null') != 'null' and order_id is null, 'order_id_type', null),
      if(not regexp_matches(order_id, '^ORD-[0-9A-F]{12}$'), 'order_id_pattern', null),
      if(is_json and coalesce(tokens[4], 'null') = 'null', 'customer_id_required', null),
      if(is_json and coalesce(tokens[4], 'null') != 'null' and customer_id is null, 'customer_id_type', null),
      if(not regexp_matches(customer_id, '^CUST-[0-9]{5}$'), 'customer_id_pattern', null),
      if(is_json and coalesce(tokens[5], 'null') != 'null' and customer_email is null, 'customer_email_type', null),
      if(is_json and coalesce(tokens[6], 'null') != 'null' and customer_name is null, 'customer_name_type', null),
      if(is_json and coalesce(tokens[7], 'null') != 'null' and shipping_address is null, 'shipping_address_type', null),
      if(is_json and coalesce(tokens[8], 'null') = 'null', 'product_id_required', null),
      if(is_json and coalesce(tokens[8], 'null') != 'null' and product_id is null, 'product_id_type', null),
      if(not regexp_matches(product_id, '^PROD-[0-9]{4}$'), 'product_id_pattern', null),
      if(is_json and coalesce(tokens[9], 'null') = 'null', 'quantity_required', null),
      if(is_json and coalesce(tokens[9], 'null') != 'null' and quantity is null, 'quantity_type', null),
      if(quantity < 1, 'quantity_min', null),
      if(is_json and coalesce(tokens[10], 'null') = 'null', 'price_required', null),
      if(is_json and coalesce(tokens[10], 'null') != 'null' and price is null, 'price_type', null),
      if(price <= 0, 'price_min_exclusive', null),
      if(is_json and coalesce(tokens[11], 'null') = 'null', 'currency_required', null),
      if(is_json and coalesce(tokens[11], 'null') != 'null' and currency is null, 'currency_type', null),
      if(currency not in ('USD', 'EUR', 'GBP'), 'currency_accepted_values', null),
      if(is_json and coalesce(tokens[12], 'null') = 'null', 'status_required', null),
      if(is_json and coalesce(tokens[12], 'null') != 'null' and status is null, 'status_type', null),
      if(status not in ('placed', 'paid', 'shipped', 'delivered', 'cancelled'), 'status_accepted_values', null),
      if(is_json and coalesce(tokens[13], 'null') = 'null', 'event_ts_required', null),
      if(is_json and coalesce(tokens[13], 'null') != 'null' and event_ts is null, 'event_ts_type', null)
    ], lambda rule: rule is not null) as failed_rules
  from typed
)
select
  record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record,
  order_id, customer_id, customer_email, customer_name, shipping_address, product_id, quantity, price, currency, status, event_ts,
  extra_fields, extra, failed_rules
from checked;

create or replace table baseline.orders_quarantine as
select record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record, failed_rules
from baseline.orders_staged
where len(failed_rules) > 0;

create or replace table baseline.orders_duplicates as
with ranked as (
  -- each version's successor: the next newer version of its key
  select
    order_id, customer_id, product_id, event_id, event_ts, record_id, source_kind, ingested_at, ingest_date,
    lag(record_id) over latest_first as duplicate_of,
    lag(event_id) over latest_first as successor_event_id
  from baseline.orders_staged
  where len(failed_rules) = 0
  window latest_first as (partition by order_id order by event_ts desc, ingested_at desc, record_id desc)
)
select
  * exclude (successor_event_id),
  if(coalesce(event_id = successor_event_id, false), 'redelivery', 'older_version') as duplicate_kind
from ranked
where duplicate_of is not null;

create or replace table baseline.orders as
select
  order_id,
  customer_id,
  sha256('{pii_salt}' || customer_email) as customer_email_hash,
  sha256('{pii_salt}' || customer_name) as customer_name_hash,
  sha256('{pii_salt}' || shipping_address) as shipping_address_hash,
  product_id,
  quantity,
  price,
  quantity * price as total_price,
  currency,
  status,
  event_ts,
  extra::varchar as extra,
  cast(event_ts as date) as event_date,
  event_id,
  record_id,
  source_kind,
  ingested_at,
  ingest_date
from baseline.orders_staged
where len(failed_rules) = 0
qualify row_number() over (partition by order_id order by event_ts desc, ingested_at desc, record_id desc) = 1;


-- page_views ------------------------------------------------------------------------------------------

create or replace table baseline.page_views_staged as
with landing as (
  select
    'landing' as source_kind,
    '{landing_uri}' || substr(filename, length('{landing_dir}') + 1) as origin,
    ingest_date,
    cast(ingest_date as timestamptz) + to_hours(try_cast(hour as bigint)) as ingested_at,
    coalesce(line, '') as raw_record
  from read_csv('{landing_dir}/source=page_views/**/*', {csv_options})
),
numbered as (
  -- origin fixes ingest_date and source_kind: the occurrence of a line within its file
  select *, row_number() over (partition by origin, raw_record) as occurrence
  from landing
),
parsed as (
  -- one parse for every path: NULL when the line is not JSON
  select
    sha256(source_kind || '|' || origin || '|' || raw_record || '|' || occurrence) as record_id,
    source_kind, origin, ingested_at, ingest_date, raw_record,
    try(json_extract(raw_record, ['$.event_id', '$.source', '$.view_id', '$.session_id', '$.customer_id', '$.page_url', '$.product_id', '$.referrer', '$.event_ts'])) as tokens
  from numbered
),
typed as (
  select
    *,
    tokens is not null as is_json,
    json_value(tokens[1], '$') ->> '$' as event_id,
    if(starts_with(tokens[3], '"'), tokens[3] ->> '$', null) as view_id,
    if(starts_with(tokens[4], '"'), tokens[4] ->> '$', null) as session_id,
    if(starts_with(tokens[5], '"'), tokens[5] ->> '$', null) as customer_id,
    if(starts_with(tokens[6], '"'), tokens[6] ->> '$', null) as page_url,
    if(starts_with(tokens[7], '"'), tokens[7] ->> '$', null) as product_id,
    if(starts_with(tokens[8], '"'), tokens[8] ->> '$', null) as referrer,
    if(starts_with(tokens[9], '"'), try_cast(tokens[9] ->> '$' as timestamptz), null) as event_ts,
    if(tokens is null, [], list_sort(list_distinct(list_filter(json_keys(raw_record), lambda k: k not in (
      'source', 'event_id', 'view_id', 'session_id', 'customer_id', 'page_url', 'product_id', 'referrer', 'event_ts'))))) as extra_fields
  from parsed
),
checked as (
  select
    *,
    if(len(extra_fields) = 0, null, json('{' || array_to_string(list_transform(extra_fields, lambda k:
      to_json(k)::varchar || ':' || (raw_record -> ('/' || replace(replace(k, '~', '~0'), '/', '~1')))::varchar
    ), ',') || '}')) as extra,
    list_filter([
      if(not is_json, 'record_not_json', null),
      if(strpos(raw_record, chr(65533)) > 0, 'record_not_utf8', null),
      if(strlen(raw_record) > 65536, 'record_oversized', null),
      if(is_json and coalesce(tokens[2] ->> '$' != 'page_views', true), 'record_source_mismatch', null),
      if(is_json and coalesce(tokens[3], 'null') = 'null', 'view_id_required', null),
      if(is_json and coalesce(tokens[3], 'null') != 'null' and view_id is null, 'view_id_type', null),
      if(not regexp_matches(view_id, '^PV-[0-9A-F]{12}$'), 'view_id_pattern', null),
      if(is_json and coalesce(tokens[4], 'null') = 'null', 'session_id_required', null),
      if(is_json and coalesce(tokens[4], 'null') != 'null' and session_id is null, 'session_id_type', null),
      if(not regexp_matches(session_id, '^SESS-[0-9]{6}$'), 'session_id_pattern', null),
      if(is_json and coalesce(tokens[5], 'null') != 'null' and customer_id is null, 'customer_id_type', null),
      if(not regexp_matches(customer_id, '^CUST-[0-9]{5}$'), 'customer_id_pattern', null),
      if(is_json and coalesce(tokens[6], 'null') = 'null', 'page_url_required', null),
      if(is_json and coalesce(tokens[6], 'null') != 'null' and page_url is null, 'page_url_type', null),
      if(is_json and coalesce(tokens[7], 'null') != 'null' and product_id is null, 'product_id_type', null),
      if(not regexp_matches(product_id, '^PROD-[0-9]{4}$'), 'product_id_pattern', null),
      if(is_json and coalesce(tokens[8], 'null') != 'null' and referrer is null, 'referrer_type', null),
      if(is_json and coalesce(tokens[9], 'null') = 'null', 'event_ts_required', null),
      if(is_json and coalesce(tokens[9], 'null') != 'null' and event_ts is null, 'event_ts_type', null)
    ], lambda rule: rule is not null) as failed_rules
  from typed
)
select
  record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record,
  view_id, session_id, customer_id, page_url, product_id, referrer, event_ts,
  extra_fields, extra, failed_rules
from checked;

create or replace table baseline.page_views_quarantine as
select record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record, failed_rules
from baseline.page_views_staged
where len(failed_rules) > 0;

create or replace table baseline.page_views_duplicates as
with ranked as (
  -- each version's successor: the next newer version of its key
  select
    view_id, customer_id, product_id, event_id, event_ts, record_id, source_kind, ingested_at, ingest_date,
    lag(record_id) over latest_first as duplicate_of,
    lag(event_id) over latest_first as successor_event_id
  from baseline.page_views_staged
  where len(failed_rules) = 0
  window latest_first as (partition by view_id order by event_ts desc, ingested_at desc, record_id desc)
)
select
  * exclude (successor_event_id),
  if(coalesce(event_id = successor_event_id, false), 'redelivery', 'older_version') as duplicate_kind
from ranked
where duplicate_of is not null;

create or replace table baseline.page_views as
select
  view_id,
  session_id,
  customer_id,
  page_url,
  product_id,
  referrer,
  event_ts,
  extra,
  cast(event_ts as date) as event_date,
  event_id,
  record_id,
  source_kind,
  ingested_at,
  ingest_date
from baseline.page_views_staged
where len(failed_rules) = 0
qualify row_number() over (partition by view_id order by event_ts desc, ingested_at desc, record_id desc) = 1;


-- user_activity ---------------------------------------------------------------------------------------

create or replace table baseline.user_activity_staged as
with landing as (
  select
    'landing' as source_kind,
    '{landing_uri}' || substr(filename, length('{landing_dir}') + 1) as origin,
    ingest_date,
    cast(ingest_date as timestamptz) + to_hours(try_cast(hour as bigint)) as ingested_at,
    coalesce(line, '') as raw_record
  from read_csv('{landing_dir}/source=user_activity/**/*', {csv_options})
),
numbered as (
  -- origin fixes ingest_date and source_kind: the occurrence of a line within its file
  select *, row_number() over (partition by origin, raw_record) as occurrence
  from landing
),
parsed as (
  -- one parse for every path: NULL when the line is not JSON
  select
    sha256(source_kind || '|' || origin || '|' || raw_record || '|' || occurrence) as record_id,
    source_kind, origin, ingested_at, ingest_date, raw_record,
    try(json_extract(raw_record, ['$.event_id', '$.source', '$.activity_id', '$.customer_id', '$.activity_type', '$.event_ts'])) as tokens
  from numbered
),
typed as (
  select
    *,
    tokens is not null as is_json,
    json_value(tokens[1], '$') ->> '$' as event_id,
    if(starts_with(tokens[3], '"'), tokens[3] ->> '$', null) as activity_id,
    if(starts_with(tokens[4], '"'), tokens[4] ->> '$', null) as customer_id,
    if(starts_with(tokens[5], '"'), tokens[5] ->> '$', null) as activity_type,
    if(starts_with(tokens[6], '"'), try_cast(tokens[6] ->> '$' as timestamptz), null) as event_ts,
    if(tokens is null, [], list_sort(list_distinct(list_filter(json_keys(raw_record), lambda k: k not in (
      'source', 'event_id', 'activity_id', 'customer_id', 'activity_type', 'event_ts'))))) as extra_fields
  from parsed
),
checked as (
  select
    *,
    if(len(extra_fields) = 0, null, json('{' || array_to_string(list_transform(extra_fields, lambda k:
      to_json(k)::varchar || ':' || (raw_record -> ('/' || replace(replace(k, '~', '~0'), '/', '~1')))::varchar
    ), ',') || '}')) as extra,
    list_filter([
      if(not is_json, 'record_not_json', null),
      if(strpos(raw_record, chr(65533)) > 0, 'record_not_utf8', null),
      if(strlen(raw_record) > 65536, 'record_oversized', null),
      if(is_json and coalesce(tokens[2] ->> '$' != 'user_activity', true), 'record_source_mismatch', null),
      if(is_json and coalesce(tokens[3], 'null') = 'null', 'activity_id_required', null),
      if(is_json and coalesce(tokens[3], 'null') != 'null' and activity_id is null, 'activity_id_type', null),
      if(not regexp_matches(activity_id, '^ACT-[0-9A-F]{12}$'), 'activity_id_pattern', null),
      if(is_json and coalesce(tokens[4], 'null') = 'null', 'customer_id_required', null),
      if(is_json and coalesce(tokens[4], 'null') != 'null' and customer_id is null, 'customer_id_type', null),
      if(not regexp_matches(customer_id, '^CUST-[0-9]{5}$'), 'customer_id_pattern', null),
      if(is_json and coalesce(tokens[5], 'null') = 'null', 'activity_type_required', null),
      if(is_json and coalesce(tokens[5], 'null') != 'null' and activity_type is null, 'activity_type_type', null),
      if(activity_type not in ('login', 'logout', 'add_to_cart', 'remove_from_cart', 'add_to_wishlist', 'search', 'review'), 'activity_type_accepted_values', null),
      if(is_json and coalesce(tokens[6], 'null') = 'null', 'event_ts_required', null),
      if(is_json and coalesce(tokens[6], 'null') != 'null' and event_ts is null, 'event_ts_type', null)
    ], lambda rule: rule is not null) as failed_rules
  from typed
)
select
  record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record,
  activity_id, customer_id, activity_type, event_ts,
  extra_fields, extra, failed_rules
from checked;

create or replace table baseline.user_activity_quarantine as
select record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record, failed_rules
from baseline.user_activity_staged
where len(failed_rules) > 0;

create or replace table baseline.user_activity_duplicates as
with ranked as (
  -- each version's successor: the next newer version of its key
  select
    activity_id, customer_id, event_id, event_ts, record_id, source_kind, ingested_at, ingest_date,
    lag(record_id) over latest_first as duplicate_of,
    lag(event_id) over latest_first as successor_event_id
  from baseline.user_activity_staged
  where len(failed_rules) = 0
  window latest_first as (partition by activity_id order by event_ts desc, ingested_at desc, record_id desc)
)
select
  * exclude (successor_event_id),
  if(coalesce(event_id = successor_event_id, false), 'redelivery', 'older_version') as duplicate_kind
from ranked
where duplicate_of is not null;

create or replace table baseline.user_activity as
select
  activity_id,
  customer_id,
  activity_type,
  event_ts,
  extra,
  cast(event_ts as date) as event_date,
  event_id,
  record_id,
  source_kind,
  ingested_at,
  ingest_date
from baseline.user_activity_staged
where len(failed_rules) = 0
qualify row_number() over (partition by activity_id order by event_ts desc, ingested_at desc, record_id desc) = 1;


-- gold ------------------------------------------------------------------------------------------------

create or replace table baseline.daily_product_summary as
select
  event_date as sales_date,
  product_id,
  currency,
  count(*) as order_count,
  sum(quantity) as units,
  sum(total_price) as revenue
from baseline.orders
where status != 'cancelled'
group by event_date, product_id, currency;

create or replace table baseline.daily_sales as
select
  event_date as sales_date,
  currency,
  count(*) as order_count,
  count(distinct customer_id) as customer_count,
  sum(quantity) as units,
  sum(total_price) as revenue
from baseline.orders
where status != 'cancelled'
group by event_date, currency;

create or replace table baseline.conversion_funnel as
with views_by_day as (
  select
    event_date as funnel_date,
    count(distinct session_id) as session_count,
    count(distinct if(product_id is not null, session_id, null)) as product_view_session_count,
    count(distinct customer_id) as identified_visitor_count
  from baseline.page_views
  group by event_date
),
visitors as (
  select distinct event_date as funnel_date, customer_id
  from baseline.page_views
  where customer_id is not null
),
buyers as (
  select distinct event_date as funnel_date, customer_id
  from baseline.orders
  where status != 'cancelled'
),
buyers_by_day as (
  select funnel_date, count(*) as buyer_count from buyers group by funnel_date
),
converted_by_day as (
  select funnel_date, count(*) as converted_visitor_count
  from visitors
  inner join buyers using (funnel_date, customer_id)
  group by funnel_date
)
select
  funnel_date,
  coalesce(session_count, 0) as session_count,
  coalesce(product_view_session_count, 0) as product_view_session_count,
  coalesce(identified_visitor_count, 0) as identified_visitor_count,
  coalesce(buyer_count, 0) as buyer_count,
  coalesce(converted_visitor_count, 0) as converted_visitor_count,
  if(identified_visitor_count != 0, converted_visitor_count / identified_visitor_count, null)
    as visitor_conversion_rate
from views_by_day
full join buyers_by_day using (funnel_date)
left join converted_by_day using (funnel_date);

-- each customer's clicks and orders on one timeline: the last click at or before each order
create or replace table baseline.ad_attribution as
with sold as (
  select * from baseline.orders where status != 'cancelled'
),
timeline as (
  select customer_id, event_ts, false as is_order, click_id, null::varchar as order_id
  from baseline.ad_clicks
  union all
  select customer_id, event_ts, true as is_order, null::varchar as click_id, order_id
  from sold
),
latest_click_before as (
  select
    order_id,
    last_value(click_id ignore nulls) over (
      partition by customer_id order by event_ts, is_order, click_id
      rows between unbounded preceding and current row
    ) as click_id
  from timeline
  qualify is_order
)
select
  sold.order_id,
  sold.event_date as order_date,
  sold.customer_id,
  sold.event_ts as ordered_at,
  sold.total_price as revenue,
  sold.currency,
  clicks.click_id,
  clicks.campaign_id,
  clicks.ad_network,
  clicks.event_ts as clicked_at,
  clicks.cost_usd as click_cost_usd,
  date_sub('minute', clicks.event_ts, sold.event_ts) as minutes_to_order
from latest_click_before
inner join sold using (order_id)
inner join baseline.ad_clicks as clicks on latest_click_before.click_id = clicks.click_id
where sold.event_ts - interval 7 day <= clicks.event_ts;

create or replace table baseline.customers as
with sightings as (
  select customer_id, event_ts from baseline.orders
  union all
  select customer_id, event_ts from baseline.page_views where customer_id is not null
  union all
  select customer_id, event_ts from baseline.ad_clicks
  union all
  select customer_id, event_ts from baseline.user_activity
),
seen as (
  select customer_id, min(event_ts) as first_seen_at, max(event_ts) as last_seen_at
  from sightings
  group by customer_id
),
latest_order as (
  select customer_id, customer_email_hash, customer_name_hash, shipping_address_hash
  from baseline.orders
  qualify row_number() over (partition by customer_id order by event_ts desc, record_id desc) = 1
)
select
  customer_id,
  customer_email_hash,
  customer_name_hash,
  shipping_address_hash,
  first_seen_at,
  last_seen_at
from seen
left join latest_order using (customer_id);

create or replace table baseline.customer_360 as
with order_stats as (
  select
    customer_id,
    count(*) as order_count,
    sum(if(status != 'cancelled', quantity, 0)) as units,
    min(event_ts) as first_order_at,
    max(event_ts) as last_order_at
  from baseline.orders
  group by customer_id
),
view_stats as (
  select customer_id, count(*) as page_view_count, count(distinct session_id) as session_count
  from baseline.page_views
  where customer_id is not null
  group by customer_id
),
click_stats as (
  select customer_id, count(*) as ad_click_count, sum(cost_usd) as ad_cost_usd
  from baseline.ad_clicks
  group by customer_id
),
attribution_stats as (
  select customer_id, count(*) as attributed_order_count
  from baseline.ad_attribution
  group by customer_id
),
activity_stats as (
  select customer_id, count(*) as activity_count, max(event_ts) as last_activity_at
  from baseline.user_activity
  group by customer_id
)
select
  customer_id,
  customers.customer_email_hash,
  customers.first_seen_at,
  customers.last_seen_at,
  coalesce(order_count, 0) as order_count,
  coalesce(units, 0) as units,
  first_order_at,
  last_order_at,
  coalesce(page_view_count, 0) as page_view_count,
  coalesce(session_count, 0) as session_count,
  coalesce(ad_click_count, 0) as ad_click_count,
  coalesce(ad_cost_usd, 0) as ad_cost_usd,
  coalesce(attributed_order_count, 0) as attributed_order_count,
  coalesce(activity_count, 0) as activity_count,
  last_activity_at
from baseline.customers as customers
left join order_stats using (customer_id)
left join view_stats using (customer_id)
left join click_stats using (customer_id)
left join attribution_stats using (customer_id)
left join activity_stats using (customer_id);

create or replace table baseline.products as
with product_ids as (
  select product_id from baseline.orders
  union
  select product_id from baseline.page_views where product_id is not null
  union
  select product_id from baseline.inventory
),
latest_prices as (
  select product_id, price as latest_unit_price, currency as latest_price_currency
  from baseline.orders
  qualify row_number() over (partition by product_id order by event_ts desc, record_id desc) = 1
),
order_stats as (
  select
    product_id,
    min(event_ts) as first_ordered_at,
    max(event_ts) as last_ordered_at,
    count(*) as order_count
  from baseline.orders
  group by product_id
),
view_stats as (
  select product_id, count(*) as page_view_count
  from baseline.page_views
  where product_id is not null
  group by product_id
),
stock as (
  select product_id, sum(quantity_on_hand) as units_on_hand, count(*) as warehouse_count
  from baseline.inventory
  group by product_id
)
select
  product_id,
  latest_unit_price,
  latest_price_currency,
  first_ordered_at,
  last_ordered_at,
  coalesce(order_count, 0) as order_count,
  coalesce(page_view_count, 0) as page_view_count,
  units_on_hand,
  coalesce(warehouse_count, 0) as warehouse_count
from product_ids
left join latest_prices using (product_id)
left join order_stats using (product_id)
left join view_stats using (product_id)
left join stock using (product_id);

create or replace table baseline.inventory_levels as
with latest_order_date as (
  select max(event_date) as latest_date from baseline.orders
),
recent_sales as (
  select product_id, sum(quantity) as units_sold
  from baseline.orders, latest_order_date
  where status != 'cancelled' and event_date > latest_date - 7
  group by product_id
)
select
  warehouse_id,
  product_id,
  quantity_on_hand,
  event_ts as counted_at,
  quantity_on_hand = 0 as is_out_of_stock,
  coalesce(units_sold, 0) as product_units_sold_7d,
  sum(quantity_on_hand) over (partition by product_id) as product_units_on_hand
from baseline.inventory
left join recent_sales using (product_id);
