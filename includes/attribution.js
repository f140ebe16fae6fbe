// Last-click attribution: the rule, written once for gold.ad_attribution (incremental) and
// ops.ad_attribution_reference (the same rule over all of silver, which the unit tests pin), and the
// rows an incremental run of gold.ad_attribution recomputes.
//
// An order's row depends on the order's own version and on its customer's last click at or before it
// within the window. So a run recomputes the orders whose order_id it touched (a new or displaced
// version: cancelled, moved to another customer or time) and, for each click version it touched (the
// batch's valid clicks and the versions they displaced, at their old and new times), the orders whose
// last click it is or was: those of its customer from its time up to the window's end and before the
// customer's next click in silver (an order at that next click's own instant takes that click). A
// late click among frequent ones thus recomputes the few orders up to the next click, not days.
// Every such order's old and new ordered_at is at or after attribution_from (the earliest event time
// of a touched order or click version: silver keeps the latest event of a key, so an order's current
// version is never older than a version of it in the batch), which bounds every read by date.

// The script variables of an incremental run.
const ORDER_IDS = "attribution_order_ids";
const FROM = "attribution_from";

function windowDays() {
  return params.attributionWindowDays();
}

// Returns the CTEs (from `sold as` to `final as`, no WITH, no trailing comma) of the last-click rule
// over the CTEs named `orders` (silver orders' columns) and `clicks` (silver ad_clicks' columns):
// `final` holds one row per order not cancelled whose customer's last click at or before it lies
// within the window. The clicks must include every click of the orders' customers from
// (earliest ordered_at - window) on: the last click is then the same as over all clicks.
function ruleCtes(orders, clicks) {
  return `sold as (
  select * from ${orders}
  where status != 'cancelled'
),

-- Each customer's clicks and orders on one timeline, so "the last click before the order" is a
-- running value (one sort per customer) rather than a join that pairs every order with every click of
-- the customer. Ties: a click at the order's own instant counts (clicked_at <= ordered_at), so clicks
-- sort before orders of the same instant, and among clicks of one instant the greatest click_id is the
-- last. Rows without a customer or time are never attributed.
timeline as (
  select
    customer_id,
    event_ts,
    false as is_order,
    click_id,
    cast(null as string) as order_id,
  from ${clicks}
  where customer_id is not null and event_ts is not null
  union all
  select
    customer_id,
    event_ts,
    true as is_order,
    cast(null as string) as click_id,
    order_id,
  from sold
  where customer_id is not null and event_ts is not null
),

latest_click_before as (
  select
    order_id,
    last_value(click_id ignore nulls) over (
      partition by customer_id
      order by event_ts, is_order, click_id
      rows between unbounded preceding and current row
    ) as click_id,
  from timeline
),

last_clicks as (
  select
    sold.order_id,
    sold.event_date as order_date,
    sold.customer_id,
    sold.event_ts as ordered_at,
    sold.total_price as revenue,
    sold.currency,
    last_click.click_id,
    last_click.campaign_id,
    last_click.ad_network,
    last_click.event_ts as clicked_at,
    last_click.cost_usd as click_cost_usd,
  from latest_click_before
  inner join sold on latest_click_before.order_id = sold.order_id
  inner join ${clicks} as last_click on latest_click_before.click_id = last_click.click_id
  -- The window is inclusive at both ends; a last click older than it means no click within it.
  where timestamp_sub(sold.event_ts, interval ${windowDays()} day) <= last_click.event_ts
),

final as (
  select
    *,
    timestamp_diff(ordered_at, clicked_at, minute) as minutes_to_order,
  from last_clicks
)`;
}

// Returns the pre-operations of gold.ad_attribution: on an incremental run, declare the orders to
// recompute and the earliest time they (old or new) and the touched clicks stand at, then delete
// their rows inside one transaction (closed by touched.postOps).
function preOps(ctx) {
  const clicks = touched.versions(ctx, "ad_clicks", ["customer_id", "event_ts"], 8);
  return ctx.when(ctx.incremental(), `declare ${FROM} timestamp default (
  select min(touched.event_ts)
  from (
${touched.versions(ctx, "orders", ["event_ts"], 4)}
    union all
${touched.versions(ctx, "ad_clicks", ["event_ts"], 4)}
  ) as touched
);

declare ${ORDER_IDS} array<string> default (
  select array_agg(distinct recomputed.order_id)
  from (
${touched.versions(ctx, "orders", ["order_id"], 4)}
    union all
    select orders.order_id
    from ${ctx.ref("orders")} as orders
    inner join (
      select
        touched_clicks.customer_id,
        touched_clicks.event_ts as clicked_at,
        (
          select min(later.event_ts)
          from ${ctx.ref("ad_clicks")} as later
          where
            later.event_date >= date(touched_clicks.event_ts)
            and later.customer_id = touched_clicks.customer_id
            and later.event_ts > touched_clicks.event_ts
        ) as next_clicked_at,
      from (
${clicks}
      ) as touched_clicks
    ) as click_spans
      on
        orders.customer_id = click_spans.customer_id
        and orders.event_ts
        between click_spans.clicked_at
        and timestamp_add(click_spans.clicked_at, interval ${windowDays()} day)
        and (click_spans.next_clicked_at is null or orders.event_ts < click_spans.next_clicked_at)
    where orders.event_date >= date(${FROM})
  ) as recomputed
  where recomputed.order_id is not null
);

begin transaction;

delete from ${ctx.self()}
where order_date >= date(${FROM}) and order_id in unnest(${ORDER_IDS});`, "");
}

// Returns the filter of silver orders to attribute (`keyword` "where" or "and"): on an incremental
// run, the orders preOps declared.
function ordersFilter(ctx, keyword = "where") {
  return ctx.when(
    ctx.incremental(),
    `\n  ${keyword} event_date >= date(${FROM}) and order_id in unnest(${ORDER_IDS})`,
    "",
  );
}

// Returns the filter of silver ad_clicks an incremental run reads: those of the customers of
// `orders` (a CTE name) from attribution_from - window on, whole days so BigQuery can prune.
function clicksFilter(ctx, orders) {
  return ctx.when(ctx.incremental(), `
  where
    event_date >= date(timestamp_sub(${FROM}, interval ${windowDays()} day))
    and customer_id in (select scoped_orders.customer_id from ${orders} as scoped_orders)`, "");
}

module.exports = { ruleCtes, preOps, ordersFilter, clicksFilter };
