-- The hand-written DuckDB baseline of bench/run_all.py's e2e step: the work the engine does from the
-- orders landing files to gold.daily_product_summary (read every line, parse, type, check every rule of
-- includes/contracts/orders.json, keep the latest valid version per order with PII hashed, aggregate),
-- written directly for DuckDB, with no compile, no translation and no run bookkeeping.
-- {landing_glob} and {pii_salt} are filled in by run_all.py.

create or replace table baseline.orders_staged as
with landing as (
  select
    'landing' as source_kind,
    filename as origin,
    cast(ingest_date as date) as ingest_date,
    cast(ingest_date as timestamptz) + to_hours(cast(hour as bigint)) as ingested_at,
    line as raw_record
  from read_csv('{landing_glob}', delim = chr(1), quote = '', escape = '', header = false,
                columns = {'line': 'VARCHAR'}, hive_partitioning = true, filename = true)
),
numbered as (
  select *, row_number() over (partition by ingest_date, source_kind, origin, raw_record) as occurrence
  from landing
),
parsed as (
  select
    sha256(source_kind || '|' || origin || '|' || raw_record || '|' || occurrence) as record_id,
    source_kind, origin, ingested_at, ingest_date, raw_record,
    json_valid(raw_record) as is_json
  from numbered
),
extracted as (
  select
    *,
    if(is_json, raw_record ->> '$.event_id', null) as event_id,
    if(is_json, raw_record ->> '$.source', null) as payload_source,
    if(is_json, json_keys(raw_record), []) as payload_keys,
    if(is_json, json_type(raw_record, '$.order_id'), null) as t_order_id,
    if(is_json, json_type(raw_record, '$.customer_id'), null) as t_customer_id,
    if(is_json, json_type(raw_record, '$.customer_email'), null) as t_customer_email,
    if(is_json, json_type(raw_record, '$.customer_name'), null) as t_customer_name,
    if(is_json, json_type(raw_record, '$.shipping_address'), null) as t_shipping_address,
    if(is_json, json_type(raw_record, '$.product_id'), null) as t_product_id,
    if(is_json, json_type(raw_record, '$.quantity'), null) as t_quantity,
    if(is_json, json_type(raw_record, '$.price'), null) as t_price,
    if(is_json, json_type(raw_record, '$.currency'), null) as t_currency,
    if(is_json, json_type(raw_record, '$.status'), null) as t_status,
    if(is_json, json_type(raw_record, '$.event_ts'), null) as t_event_ts
  from parsed
),
typed as (
  select
    *,
    if(t_order_id = 'VARCHAR', raw_record ->> '$.order_id', null) as order_id,
    if(t_customer_id = 'VARCHAR', raw_record ->> '$.customer_id', null) as customer_id,
    if(t_customer_email = 'VARCHAR', raw_record ->> '$.customer_email', null) as customer_email,
    if(t_customer_name = 'VARCHAR', raw_record ->> '$.customer_name', null) as customer_name,
    if(t_shipping_address = 'VARCHAR', raw_record ->> '$.shipping_address', null) as shipping_address,
    if(t_product_id = 'VARCHAR', raw_record ->> '$.product_id', null) as product_id,
    if(t_quantity in ('BIGINT', 'UBIGINT'), try_cast(raw_record ->> '$.quantity' as bigint), null) as quantity,
    if(t_price in ('BIGINT', 'UBIGINT', 'DOUBLE'), try_cast(raw_record ->> '$.price' as decimal(38, 9)), null)
      as price,
    if(t_currency = 'VARCHAR', raw_record ->> '$.currency', null) as currency,
    if(t_status = 'VARCHAR', raw_record ->> '$.status', null) as status,
    if(t_event_ts = 'VARCHAR', try_cast(raw_record ->> '$.event_ts' as timestamptz), null) as event_ts
  from extracted
),
checked as (
  select
    *,
    list_filter([
      if(not is_json, 'record_not_json', null),
      if(octet_length(encode(raw_record)) > 65536, 'record_oversized', null),
      if(is_json and coalesce(payload_source != 'orders', true), 'record_source_mismatch', null),
      if(len(list_filter(payload_keys, lambda k: k not in ('source', 'event_id', 'order_id', 'customer_id',
          'customer_email', 'customer_name', 'shipping_address', 'product_id', 'quantity', 'price', 'currency',
          'status', 'event_ts'))) > 0, 'record_unexpected_field', null),
      if(is_json and coalesce(t_order_id, 'NULL') = 'NULL', 'order_id_required', null),
      if(is_json and coalesce(t_order_id, 'NULL') != 'NULL' and order_id is null, 'order_id_type', null),
      if(not regexp_matches(order_id, '^ORD-[0-9A-F]{12}$'), 'order_id_pattern', null),
      if(is_json and coalesce(t_customer_id, 'NULL') = 'NULL', 'customer_id_required', null),
      if(is_json and coalesce(t_customer_id, 'NULL') != 'NULL' and customer_id is null, 'customer_id_type', null),
      if(not regexp_matches(customer_id, '^CUST-[0-9]{5}$'), 'customer_id_pattern', null),
      if(is_json and coalesce(t_customer_email, 'NULL') != 'NULL' and customer_email is null,
         'customer_email_type', null),
      if(is_json and coalesce(t_customer_name, 'NULL') != 'NULL' and customer_name is null,
         'customer_name_type', null),
      if(is_json and coalesce(t_shipping_address, 'NULL') != 'NULL' and shipping_address is null,
         'shipping_address_type', null),
      if(is_json and coalesce(t_product_id, 'NULL') = 'NULL', 'product_id_required', null),
      if(is_json and coalesce(t_product_id, 'NULL') != 'NULL' and product_id is null, 'product_id_type', null),
      if(not regexp_matches(product_id, '^PROD-[0-9]{4}$'), 'product_id_pattern', null),
      if(is_json and coalesce(t_quantity, 'NULL') = 'NULL', 'quantity_required', null),
      if(is_json and coalesce(t_quantity, 'NULL') != 'NULL' and quantity is null, 'quantity_type', null),
      if(quantity < 1, 'quantity_min', null),
      if(is_json and coalesce(t_price, 'NULL') = 'NULL', 'price_required', null),
      if(is_json and coalesce(t_price, 'NULL') != 'NULL' and price is null, 'price_type', null),
      if(price <= 0, 'price_min_exclusive', null),
      if(is_json and coalesce(t_currency, 'NULL') = 'NULL', 'currency_required', null),
      if(is_json and coalesce(t_currency, 'NULL') != 'NULL' and currency is null, 'currency_type', null),
      if(currency not in ('USD', 'EUR', 'GBP'), 'currency_accepted_values', null),
      if(is_json and coalesce(t_status, 'NULL') = 'NULL', 'status_required', null),
      if(is_json and coalesce(t_status, 'NULL') != 'NULL' and status is null, 'status_type', null),
      if(status not in ('placed', 'paid', 'shipped', 'delivered', 'cancelled'), 'status_accepted_values', null),
      if(is_json and coalesce(t_event_ts, 'NULL') = 'NULL', 'event_ts_required', null),
      if(is_json and coalesce(t_event_ts, 'NULL') != 'NULL' and event_ts is null, 'event_ts_type', null)
    ], lambda rule: rule is not null) as failed_rules
  from typed
)
select * from checked;

create or replace table baseline.orders_quarantine as
select record_id, source_kind, origin, ingested_at, ingest_date, event_id, raw_record, failed_rules
from baseline.orders_staged
where len(failed_rules) > 0;

create or replace table baseline.orders_duplicates as
with ranked as (
  select
    order_id, event_id, event_ts, record_id, source_kind, ingested_at, ingest_date,
    first_value(record_id) over latest_first as duplicate_of,
    first_value(event_id) over latest_first as kept_event_id
  from baseline.orders_staged
  where len(failed_rules) = 0
  window latest_first as (partition by order_id order by event_ts desc, ingested_at desc, record_id desc)
)
select
  * exclude (kept_event_id),
  if(coalesce(event_id = kept_event_id, false), 'redelivery', 'older_version') as duplicate_kind
from ranked
where record_id != duplicate_of;

create or replace table baseline.orders as
select
  order_id,
  customer_id,
  sha256('{pii_salt}' || customer_email) as customer_email_hash,
  sha256('{pii_salt}' || customer_name) as customer_name_hash,
  sha256('{pii_salt}' || shipping_address) as shipping_address_hash,
  product_id, quantity, price, quantity * price as total_price, currency, status, event_ts,
  cast(event_ts as date) as event_date, event_id, record_id, source_kind, ingested_at, ingest_date
from baseline.orders_staged
where len(failed_rules) = 0
qualify row_number() over (partition by order_id order by event_ts desc, ingested_at desc, record_id desc) = 1;

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
group by all;
